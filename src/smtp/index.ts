/**
 * Public surface of the inbound SMTP protocol server; the rest of src/smtp is internal.
 */

export { BindError, SmtpServer } from "./server.js";
export type {
  Envelope,
  HookVerdict,
  ListenerSpec,
  SessionHooks,
  SessionInfo,
  SmtpLimits,
  SmtpReply,
  SmtpServerOptions,
} from "./types.js";
