export { startBot, type Bot, type BotContent, type BotDeps, type BotMessage } from "./bot.ts";
