export { startBot, type Bot, type BotDeps, type BotMessage } from "./bot.ts";
export { decryptAttachment, isEncryptedFile, type EncryptedFile } from "./attachment.ts";
export { asUser, type AsUser } from "./as-user.ts";
