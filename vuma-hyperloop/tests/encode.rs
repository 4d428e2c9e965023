//! Property tests of the device-side bitplane encoder (`encode`), through its host variant:
//! on random and structured data, the device's block encoder is byte-identical to the host
//! encoder, and an eviction (size pass, layout, write pass) on the host device produces the
//! host encoder's chunk images and uploads back to exactly the original bytes.

use proptest::prelude::*;
use vuma_core::{DynDevice, HostDevice, Placement};
use vuma_hyperloop::bitplane;
use vuma_hyperloop::encode::{encode_block_as_device, DeviceEncoder};
use vuma_hyperloop::page::ElemWidth;
use vuma_hyperloop::planner::{DeviceCodec, PageDecision};
use vuma_hyperloop::residency::{CompressOptions, CompressedBuffer, Uploader};

/// Bytes that exercise every block mode: zeros, a few distinct values (dictionary), runs,
/// and anything at all.
fn structured(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max),
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(0x3f), Just(0x80), 0u8..4],
            0..max
        ),
        proptest::collection::vec(prop_oneof![9 => Just(0u8), 1 => any::<u8>()], 0..max),
        (any::<u8>(), 0..max).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn width() -> impl Strategy<Value = ElemWidth> {
    prop_oneof![
        Just(ElemWidth::U8),
        Just(ElemWidth::Bf16),
        Just(ElemWidth::F32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn device_block_encoder_is_byte_identical(block in structured(1025)) {
        let block = &block[..block.len().min(1024)];
        let (mut host, mut dev) = (Vec::new(), Vec::new());
        bitplane::encode_block(block, &mut host);
        encode_block_as_device(block, &mut dev);
        prop_assert_eq!(dev, host);
    }

    #[test]
    fn eviction_matches_the_host_encoder_and_round_trips(
        data in structured(40_000),
        w in width(),
        page in prop_oneof![Just(2048usize), Just(4096), Just(65536)],
        mapped in any::<bool>(),
    ) {
        prop_assume!(!data.is_empty());
        let host = HostDevice::new();
        let mut o = CompressOptions::with_width(w);
        o.plan.page_size = page;
        o.chunk_bytes = 4 * page;
        o.direct_min_bytes = 2 * page;
        let src = DynDevice::alloc(&host, data.len() as u64, Placement::DeviceLocal).unwrap();
        DynDevice::write(&host, src.as_ref(), 0, &data).unwrap();
        let home = if mapped { Placement::HostMapped } else { Placement::Staging };
        let mut enc = DeviceEncoder::new(&host);
        let ev = enc.evict(src.as_ref(), data.len() as u64, &o, home).unwrap();
        let mut forced = o.clone();
        forced.force = Some(PageDecision::Codec(DeviceCodec::Bitplane));
        let want = CompressedBuffer::compress(&data, &forced).unwrap();
        let got = ev.to_compressed(&host).unwrap();
        prop_assert_eq!(got.chunks(), want.chunks());
        let dst = DynDevice::alloc(&host, data.len() as u64 + 16, Placement::DeviceLocal).unwrap();
        DynDevice::fill(&host, dst.as_ref(), 0, data.len() as u64 + 16, 0xA5).unwrap();
        Uploader::new(&host).upload_pinned(ev.pinned(), dst.as_ref()).unwrap();
        let mut back = vec![0u8; data.len() + 16];
        DynDevice::read(&host, dst.as_ref(), 0, &mut back).unwrap();
        prop_assert!(back[..data.len()] == data[..], "round trip differs");
        prop_assert!(back[data.len()..].iter().all(|&b| b == 0xA5), "wrote past the data");
    }
}
