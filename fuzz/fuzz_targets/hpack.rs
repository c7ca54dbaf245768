//! `halley::h2::hpack::Decoder::decode` on arbitrary header blocks, and an
//! encoder round trip.
//!
//! Checks, besides "no panic":
//! - a decoded list is within the size limit (name + value + 32 per field),
//!   whatever the block (the HPACK bomb bound), with the limit derived from
//!   the input;
//! - the dynamic table never exceeds its 4,096 bytes;
//! - the input cut in two blocks decodes with one decoder without panic;
//! - fields built from the input, written by `encode_response`, read back
//!   exactly.
#![no_main]

use halley::h2::hpack::{encode_response, Decoder};
use halley_fuzz::Rng;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rng = Rng::new(data);
    let limit = 1 + rng.below(20_000);
    let mut d = Decoder::new(4096);
    if let Ok(list) = d.decode(data, limit) {
        let size: usize = list.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert!(size <= limit, "a list of {size} bytes over the {limit} limit");
    }
    assert!(d.table_size() <= 4096);
    let cut = rng.below(data.len() + 1);
    let mut d = Decoder::new(4096);
    let _ = d.decode(&data[..cut], 65536);
    let _ = d.decode(&data[cut..], 65536);
    assert!(d.table_size() <= 4096);
    // Round trip: values from the input.
    let values: Vec<Vec<u8>> = data.chunks(1 + rng.below(40)).take(8).map(<[u8]>::to_vec).collect();
    let names: Vec<String> = (0..values.len()).map(|i| format!("x-{i}")).collect();
    let fields: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(values.iter().map(Vec::as_slice)).collect();
    let status = 100 + rng.below(500) as u16;
    let block = encode_response(status, &fields);
    let list = Decoder::new(4096).decode(&block, 1 << 20).expect("our own block decodes");
    assert_eq!(list[0], (b":status".to_vec(), status.to_string().into_bytes()));
    for (got, (name, value)) in list[1..].iter().zip(&fields) {
        assert_eq!((got.0.as_slice(), got.1.as_slice()), (name.as_bytes(), *value));
    }
    assert_eq!(list.len(), fields.len() + 1);
});
