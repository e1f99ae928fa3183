export { startBot, type Bot, type BotContent, type BotDeps, type BotMessage } from "./bot.ts";
export { BOTS_JOB, createBotHost, neverLeader, type BotHost, type HostedBot } from "./host.ts";
export { BOT_MIGRATIONS } from "./migrations.ts";
