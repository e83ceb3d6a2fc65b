# Sourced by the GPU scripts: writes what the run ran on (date, card, python, torch, cores)
# to $OUT/machine.txt and shows it. Needs OUT and PYTHON set.
{
    date -u +%FT%TZ
    nvidia-smi -L 2>&1 || true
    "$PYTHON" -c 'import torch, sys; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
    nproc
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
