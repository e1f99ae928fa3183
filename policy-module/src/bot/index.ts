export { startBot, type Bot, type BotDeps, type BotMessage } from "./bot.ts";
export { decryptAttachment, isEncryptedFile, type EncryptedFile } from "./attachment.ts";
