export { startBot, type Bot, type BotDeps, type BotMessage } from "./bot.ts";
