// Translations with i18next: the language follows the browser (navigator.languages) until the
// user picks one, which is remembered in localStorage (a preference, no personal data).
import i18next from "i18next";
import en from "./locales/en.json";
import fr from "./locales/fr.json";
import nl from "./locales/nl.json";
import channelsEn from "./locales/channels/en.json";
import channelsFr from "./locales/channels/fr.json";
import channelsNl from "./locales/channels/nl.json";
import groupsEn from "./locales/groups/en.json";
import groupsFr from "./locales/groups/fr.json";
import groupsNl from "./locales/groups/nl.json";

export const LANGUAGES = [
  { code: "nl", name: "Nederlands" },
  { code: "fr", name: "Français" },
  { code: "en", name: "English" },
];
const KEY = "medmesh.console.language";

function detect() {
  const saved = localStorage.getItem(KEY);
  if (saved && LANGUAGES.some((l) => l.code === saved)) return saved;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.some((l) => l.code === base)) return base;
  }
  return "en";
}

export async function initI18n() {
  await i18next.init({
    lng: detect(),
    fallbackLng: "en",
    resources: {
      en: { translation: en, channels: channelsEn, groups: groupsEn },
      fr: { translation: fr, channels: channelsFr, groups: groupsFr },
      nl: { translation: nl, channels: channelsNl, groups: groupsNl },
    },
    interpolation: { escapeValue: false }, // Preact escapes what it renders
  });
  document.documentElement.lang = i18next.language;
  document.title = i18next.t("app.title");
}

/** @param {string} code */
export async function setLanguage(code) {
  localStorage.setItem(KEY, code);
  await i18next.changeLanguage(code);
  document.documentElement.lang = code;
  document.title = i18next.t("app.title");
}

/** @param {string} key @param {Record<string, unknown>} [values] @returns {string} */
export const t = (key, values) => String(i18next.t(key, values));
