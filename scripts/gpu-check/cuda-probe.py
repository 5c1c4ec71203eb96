#!/usr/bin/env python3
"""What CUDA shows this process, through the driver API (libcuda.so.1, ctypes: nothing to install).

Run by scripts/gpu-check (check.mjs job) as a job of the core's local executor with one reserved
card. nvidia-smi does not honour CUDA_VISIBLE_DEVICES (it lists every card through NVML), so the
only way to see what a job really gets is to ask CUDA, which does.

Prints one line `PROBE <json>`: CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, pid and process group, and
each device CUDA enumerates (name, UUID, PCI bus id, memory), or `error`. With `--hold N` it then
makes a context on the first device, allocates 256 MiB, prints `HOLDING` and waits N seconds, so
that nvidia-smi shows the process on the card meanwhile.
"""
import ctypes
import json
import os
import sys
import time

out = {
    "cudaVisibleDevices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "cudaDeviceOrder": os.environ.get("CUDA_DEVICE_ORDER"),
    "pid": os.getpid(),
    "pgid": os.getpgid(0),
}
hold = float(sys.argv[sys.argv.index("--hold") + 1]) if "--hold" in sys.argv else 0.0


def emit():
    print("PROBE " + json.dumps(out), flush=True)


try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as error:
    out["error"] = "libcuda.so.1 cannot be loaded (no NVIDIA driver here): %s" % error
    emit()
    sys.exit(0)


def check(result, what):
    if result != 0:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(result, ctypes.byref(name))
        raise RuntimeError("%s failed: CUresult %d %s" % (what, result, name.value.decode() if name.value else ""))


def uuid_text(raw):
    h = bytes(raw).hex()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


try:
    check(cuda.cuInit(0), "cuInit")
    count = ctypes.c_int()
    check(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    # _v2 gives a MIG device's own UUID (CUDA 11.4+); the first form gives its card's.
    get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
    devices = []
    for ordinal in range(count.value):
        device = ctypes.c_int()
        check(cuda.cuDeviceGet(ctypes.byref(device), ordinal), "cuDeviceGet")
        name = ctypes.create_string_buffer(256)
        check(cuda.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
        raw = (ctypes.c_ubyte * 16)()
        check(get_uuid(raw, device), "cuDeviceGetUuid")
        bus = ctypes.create_string_buffer(64)
        cuda.cuDeviceGetPCIBusId(bus, 64, device)
        memory = ctypes.c_size_t()
        cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        devices.append({
            "ordinal": ordinal,
            "name": name.value.decode(errors="replace"),
            # Without its GPU-/MIG- prefix: compare the 32 hex digits.
            "uuid": uuid_text(raw),
            "pciBusId": bus.value.decode(errors="replace"),
            "memoryMiB": memory.value // (1024 * 1024),
        })
    out["devices"] = devices
    if hold > 0 and devices:
        first = ctypes.c_int()
        check(cuda.cuDeviceGet(ctypes.byref(first), 0), "cuDeviceGet")
        context = ctypes.c_void_p()
        check(cuda.cuCtxCreate_v2(ctypes.byref(context), 0, first), "cuCtxCreate")
        pointer = ctypes.c_uint64()
        check(cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(256 << 20)), "cuMemAlloc")
        out["allocatedMiB"] = 256
except Exception as error:  # noqa: BLE001 - reported, not raised: the check reads the line
    out["error"] = str(error)

emit()
if out.get("allocatedMiB"):
    print("HOLDING", flush=True)
    time.sleep(hold)
