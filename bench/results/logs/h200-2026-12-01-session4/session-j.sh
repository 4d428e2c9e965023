#!/usr/bin/env bash
# Hardware session J (2026-12-01, session 4): Vulkan staging ring sweep (slot MiB x slots x copy threads), 256 MiB H2D/D2H.
B=target/hw-bundle
for f in .gl/*.deb; do dpkg -x $f / ; done; ldconfig
T0=$(date +%s); el() { echo "[t+$(( $(date +%s) - T0 ))s]"; }
run() { # slot_mib slots threads
  (cd $B && VUMA_VK_STAGING_SLOT_MIB=$1 VUMA_VK_STAGING_SLOTS=$2 VUMA_VK_COPY_THREADS=$3 VUMA_BENCH_OUT=$OUT/sweep.jsonl timeout 40 benches/vuma-vulkan-vulkan > /tmp/v.txt 2>&1)
  echo "slot=$1 slots=$2 threads=$3: $(grep -E '^vulkan/(h2d_staged|d2h_staged)/256MiB' /tmp/v.txt | awk '{printf "%s %s ratio %s | ", $1, $2, $NF}')"
}
run 16 6 16
for s in 4 8 32; do run $s 6 16; done
for n in 3 12; do run 16 $n 16; done
for s in 8 16; do run $s 12 16; done
run 16 6 12
run 16 6 16
el
