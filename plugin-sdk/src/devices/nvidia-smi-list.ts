/**
 * Reads `nvidia-smi -L` (`--list-gpus`): one line per card and, under a card in MIG mode, one
 * indented line per MIG device. It is the only output that names MIG devices by the UUID that
 * `CUDA_VISIBLE_DEVICES` (and `NVIDIA_VISIBLE_DEVICES`) accept; `-q -x` leaves it out.
 *
 *   GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
 *     MIG 3g.40gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
 *     MIG 1c.3g.40gb  Device  1: (UUID: MIG-...)
 *
 * Drivers before R470 named a MIG device `MIG-GPU-<card uuid>/<GPU instance>/<compute instance>`
 * (NVIDIA's MIG user guide); those ids are read into `gpuInstanceId`/`computeInstanceId`.
 */
import type { DiscoveredDevice } from '../workloads.js';

export interface ListedMigDevice {
  /** The profile, e.g. `1g.10gb`, `3g.40gb`, `1c.3g.40gb` (compute instance of a larger GPU instance). */
  profile: string;
  /** `Device N`: the MIG device's index on its card (`<mig_device><index>` in `-q -x`). */
  index: number;
  uuid: string;
  /** Only in the pre-R470 UUID form `MIG-GPU-<uuid>/<gi>/<ci>`. */
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
}

export interface ListedGpu {
  /** nvidia-smi's index (`GPU N`). */
  index: number;
  model: string;
  /** null when the driver printed none. */
  uuid: string | null;
  migDevices: ListedMigDevice[];
}

const GPU_LINE = /^GPU (\d+): (.*?)\s*(?:\(UUID: ([^)]*)\))?\s*$/;
const MIG_LINE = /^\s+MIG\s+(\S+)\s+Device\s+(\d+):\s*\(UUID: ([^)]+)\)\s*$/;
const OLD_MIG_UUID = /^MIG-GPU-[^/]+\/(\d+)\/(\d+)$/;

/**
 * Parses `nvidia-smi -L`. Lines it does not know (a future driver's additions) are skipped; output
 * with no card line at all (an error message, another program's output) is refused, so it is never
 * read as "no GPUs".
 */
export function parseNvidiaSmiList(text: string): ListedGpu[] {
  const gpus: ListedGpu[] = [];
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  for (const line of lines) {
    const gpu = GPU_LINE.exec(line);
    if (gpu) {
      const uuid = gpu[3]?.trim();
      gpus.push({ index: Number(gpu[1]), model: gpu[2]!, uuid: uuid && uuid !== 'N/A' ? uuid : null, migDevices: [] });
      continue;
    }
    const mig = MIG_LINE.exec(line);
    if (mig) {
      const parent = gpus.at(-1);
      if (!parent) throw new Error(`not nvidia-smi -L output: a MIG device before any GPU line: "${line.trim()}"`);
      const uuid = mig[3]!.trim();
      const old = OLD_MIG_UUID.exec(uuid);
      parent.migDevices.push({
        profile: mig[1]!,
        index: Number(mig[2]),
        uuid,
        gpuInstanceId: old ? Number(old[1]) : null,
        computeInstanceId: old ? Number(old[2]) : null,
      });
    }
  }
  if (gpus.length === 0 && lines.length > 0) throw new Error(`not nvidia-smi -L output: no "GPU <n>: <name> (UUID: ...)" line; it begins "${lines[0]!.trim().slice(0, 200)}"`);
  return gpus;
}

/** The MIG UUID `parseNvidiaSmiXml` makes up for an instance whose UUID the XML does not print. */
export function isSynthesizedMigUuid(uuid: string): boolean {
  return /\/mig-\d+$/.test(uuid);
}

/**
 * Puts the real MIG UUIDs from `nvidia-smi -L` on MIG devices read from `-q -x` (which has none),
 * so that `CUDA_VISIBLE_DEVICES` can name them. A device is matched to its card by the card's
 * UUID (else by nvidia-smi index), then by GPU instance id where `-L` has one (pre-R470 UUIDs),
 * else by MIG device index. Devices without a match keep their made-up UUID. Returns new objects.
 */
export function fillMigUuids(devices: DiscoveredDevice[], listed: ListedGpu[]): DiscoveredDevice[] {
  return devices.map((device) => {
    const details = device.details ?? {};
    if (typeof details.migParent !== 'string' || !isSynthesizedMigUuid(device.uuid)) return device;
    const parent = details.migParent;
    // By index only where one side has no real card UUID: two different UUIDs are two different cards.
    const card = listed.find((g) => g.uuid !== null && g.uuid === parent) ?? listed.find((g) => g.index === details.gpuIndex && (g.uuid === null || parent.startsWith('nvidia-pci-')));
    if (!card) return device;
    const byInstance = card.migDevices.find((m) => m.gpuInstanceId !== null && m.gpuInstanceId === details.gpuInstanceId && (m.computeInstanceId === null || m.computeInstanceId === details.computeInstanceId));
    const mig = byInstance ?? (card.migDevices.some((m) => m.gpuInstanceId !== null) ? undefined : card.migDevices.find((m) => m.index === details.migIndex));
    if (!mig) return device;
    return { ...device, uuid: mig.uuid, details: { ...details, migProfile: mig.profile } };
  });
}

/** `1g.10gb` → 10; `1c.3g.40gb` → 40; `1g.10gb+me` → 10; null when the name carries no size. */
export function migProfileGigabytes(profile: string): number | null {
  const match = /(?:^|\.)(\d+)gb(?:\+\w+)?$/.exec(profile);
  return match ? Number(match[1]) : null;
}
