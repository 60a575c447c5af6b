// Ownership records: what nspawnctl created, kept under /var/lib/nspawnctl. Destroy removes only
// what a record lists; apply refuses to take over what has no record.
import { z } from 'zod';

const bootstrapSchema = z.object({
  distribution: z.string(),
  suite: z.string(),
  mirror: z.string(),
  variant: z.string(),
  bootstrapper: z.string(),
});

export const machineRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('machine'),
  name: z.string(),
  manifest: z.string(),
  created: z.string(),
  bootstrap: bootstrapSchema,
  packages: z.array(z.string()),
  provision: z.array(z.array(z.string())),
  /** Host-absolute paths of every file and symlink nspawnctl wrote for this machine. */
  files: z.array(z.string()),
  /** When `nspawnctl upgrade` last brought the machine's packages up to date (ISO 8601); absent: never. */
  upgraded: z.string().optional(),
  /** When `rebuild` or `rollback` last put the current root filesystem in place. */
  rebuilt: z.string().optional(),
  /** The root filesystem a rebuild set aside (rollback swaps it back), and how it was built. */
  previous: z
    .object({
      path: z.string(),
      /** When it was set aside. */
      kept: z.string(),
      bootstrap: bootstrapSchema,
      packages: z.array(z.string()),
      provision: z.array(z.array(z.string())),
    })
    .optional(),
});
export type MachineRecord = z.infer<typeof machineRecordSchema>;

export const networkRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('network'),
  name: z.string(),
  manifest: z.string(),
  created: z.string(),
  files: z.array(z.string()),
});
export type NetworkRecord = z.infer<typeof networkRecordSchema>;

/** Records are root's alone: they name every file of a machine, and nothing in them is for others. */
export const RECORD_MODE = 0o600;

/** Records are compared as text, so their key order and formatting are fixed here. */
export function serializeRecord(record: MachineRecord | NetworkRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}
