// The console API's answers as the pages read them (policy-module/openapi/console.yaml is the
// contract; the e2e tests check the server against it, this file lets TypeScript check the pages).

export type Role = "org_admin" | "reviewer" | "auditor";

export interface Session {
  user_id: string;
  role: Role;
  permissions: string[];
  csrf_token: string;
  expires_at: string;
  server_name: string;
}

export interface Grant {
  user_id: string;
  role: Role;
  granted_by: string;
  granted_at: string;
  source: "console" | "synapse_admin";
}

export interface Review {
  user_id: string;
  registry: string;
  claimed_name: string;
  registered_name: string | null;
  profession: string | null;
  specialisms: string[];
  since: string;
}

export interface AuditRecord {
  seq: number;
  at: string;
  actor: string;
  action: string;
  object: string;
  outcome: string;
}

export interface AuditPage {
  records: AuditRecord[];
  next_before: number | null;
}

export interface ChainReport {
  ok: boolean;
  records: number;
  pages: number;
  first?: number;
  last?: number;
  break?: { seq: number; reason: string };
  anchor?: Record<string, unknown>;
}

export interface Member {
  user_id: string;
  display_name: string | null;
  admin: boolean;
  deactivated: boolean;
  last_seen: string | null;
  verification: string;
  profession: string | null;
}

export interface Device {
  device_id: string;
  display_name: string | null;
  last_seen: string | null;
  last_seen_ip: string | null;
}

export interface MemberDetail {
  user_id: string;
  display_name: string | null;
  admin: boolean;
  deactivated: boolean;
  verification: {
    status: string;
    profession: string | null;
    registry: string;
    expires_at: string | null;
  } | null;
  devices: Device[];
  history: AuditRecord[];
}

export interface Timed {
  ok: boolean;
  ms: number;
  error?: string;
}

export interface SweepRecord {
  at: string;
  seconds: number;
  redacted: number;
  forgotten: number;
  failed: number;
  purged_rooms: number;
  media_deleted: number;
  remote_media_deleted: number;
}

export interface Status {
  server_name: string;
  trust: {
    open_federation: boolean;
    networks: { network: string; sequence: number; expires_at: string }[];
    organisations: string[];
    sources: { source: string; ok: boolean; error?: string }[];
    reachability: ({ server: string } & Timed)[];
  };
  retention: {
    policy: { enabled: boolean; default_days: number; min_days: number };
    index: { indexed: number; waiting: number; kept: number } | null;
    rooms_with_own_period: { room_id: string; days: number }[];
    sweeps: SweepRecord[];
    recent: { at: string; action: string; object: string; outcome: string }[];
  };
  verification: { reviews_waiting: number | null };
  health: { store: Timed; synapse: Timed & { version: string | null }; bridge: Timed | null };
}

export interface Channel {
  room_id: string;
  name: string;
  scope: string;
  publishers: string[];
  professions: string[];
  mandatory: boolean;
}

export interface UrgentPost {
  event_id: string;
  sent_at: string;
  members: number;
  read: { count: number; users: string[] };
  acknowledged: { count: number; users: string[] };
}

export interface Department {
  id: string;
  user_id: string;
  name: string;
  members: string[];
  show_responder: boolean;
  rota: { from: string; until: string; on_duty: string[] }[];
  on_duty_now: string[];
}

export interface DepartmentRetired {
  id: string;
  user_id: string;
  retired: true;
  conversations_left: number;
  desks_left: number;
  deactivated: boolean;
}

export interface ListedGroup {
  room_id: string;
  name?: string;
  topic?: string;
  description?: string;
  scope: "organisation" | "network";
  professions: string[];
  join_rule?: string;
  members: number;
  in_directory: boolean;
}

export interface GroupKnock {
  user_id: string;
  display_name?: string;
  reason?: string;
  since: string;
  organisation: string;
  profession: string | null;
  admissible: boolean;
  why_not?: string;
}
