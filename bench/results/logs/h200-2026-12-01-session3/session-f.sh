#!/usr/bin/env bash
# For branch wip/vulkan-concurrent (not yet run on a GPU): Vulkan copy_concurrent on the H200.
# Build the bundle from the branch, copy the validation-layer .deb to target/hw-bundle/vvl/,
# carry ["target/hw-bundle", ".gl"], run this script. About 2 minutes of device time.
B=target/hw-bundle
for f in .gl/*.deb $B/vvl/*.deb; do dpkg -x $f /; done; ldconfig
for b in vuma-vulkan-conformance vuma-vulkan-vulkan vuma-hyperloop-vulkan vuma-hyperloop-cuda vuma-cuda-conformance; do
  (cd $B && VUMA_VK_VALIDATION=1 VUMA_REQUIRE_HW=1 timeout 60 tests/$b --nocapture > $OUT/t-$b.txt 2>&1); echo "test $b rc=$? $(grep '^test result' $OUT/t-$b.txt)"; grep -E "validation:|panicked" $OUT/t-$b.txt | head -3
done
(cd $B && VUMA_BENCH_OUT=$OUT/bench.jsonl timeout 90 benches/vuma-hyperloop-hyperloop > $OUT/log-hyperloop.txt 2>&1); echo "bench rc=$?"
grep -o '"bench":"hyperloop/vulkan[^"]*","device":"[^"]*","value":[0-9.]*\|"ratio":[0-9.]*' $OUT/bench.jsonl | paste - - | sed 's/"device":"[^"]*",//'
