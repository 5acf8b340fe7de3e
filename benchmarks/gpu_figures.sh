#!/usr/bin/env bash
# Every GPU figure the benchmarks print, in one call on a GPU machine (see "All GPU figures in one call"
# in benchmarks/README.md): synthesis throughput against plain cornucopia at 160^3, the scaling
# table, a profile of our generator, and seconds per training iteration of the on-the-fly trainer
# against the standard one (a small and a realistic patch), and a real-data training: the gpu
# preset on the fs_adults scans at 1 mm for REAL_MINUTES (default 8), scored on the held-out real
# subjects and the MNE subject (benchmarks/real_scans.py; SHARED points at a copy of
# ../shared/data holding dev_real/fs_adults and dev_real/mne_sample). Each output goes to OUT_DIR
# as it is made, so a run cut short by the time limit still returns what it finished.
#
#   bash benchmarks/gpu_figures.sh LABEL_MAP OUT_DIR
#   STEPS=real_scans bash benchmarks/gpu_figures.sh LABEL_MAP OUT_DIR      # the real-data step only
#   DEVICE=cpu SIZE=48 REAL_MM=4 REAL_MINUTES=0.5 REAL_PRESET=cpu ...      # a dry run without a GPU
set -uo pipefail
map=${1:?label map (e.g. SynthSeg training_seg_01.nii.gz)}
out=${2:?output folder}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
device=${DEVICE:-cuda}   # DEVICE=cpu SIZE=64 to try the script without a GPU
size=${SIZE:-160}
steps=${STEPS:-synth_throughput synth_scaling synth_profile onthefly_small onthefly_fullres real_scans}
step() {  # name, command...: run, keep the output and the seconds it took, go on after a failure
    local name=$1; shift
    [[ " $steps " == *" $name "* ]] || return 0
    local start=$SECONDS
    echo "== $name: $*" | tee "$out/$name.txt"
    "$@" 2>&1 | tee -a "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s" | tee -a "$out/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.txt" 2>&1
"$python" -c "import torch, cornucopia; print('torch', torch.__version__, 'cornucopia', cornucopia.__version__)" >> "$out/device.txt" 2>&1
step synth_throughput "$python" "$here/synthesis_throughput.py" "$map" --device "$device" --size "$size" --n 10
step synth_scaling "$python" "$here/synthesis_throughput.py" "$map" --device "$device" --scaling --n 10
step synth_profile "$python" "$here/synthesis_throughput.py" "$map" --device "$device" --size "$size" --profile
step onthefly_small "$python" "$here/onthefly_iteration.py" --device "$device"
step onthefly_fullres "$python" "$here/onthefly_iteration.py" --device "$device" --shape 160,192,160 --voxel-mm 1 \
    --patch 128 --features 32,64,128,256,320 --batch 2 --iterations 10 --rounds 2
step real_scans "$python" "$here/real_scans.py" "${REAL_WORK:-/tmp/real_scans_work}" \
    --shared "${SHARED:-$here/../../shared/data}" --voxel-mm "${REAL_MM:-1}" --preset "${REAL_PRESET:-gpu}" \
    --device "$device" --minutes "${REAL_MINUTES:-8}" --arms real+synthetic --synthetic-per-map 2
