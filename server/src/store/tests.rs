use super::*;

#[test]
fn page_token_round_trips_and_rejects_garbage() {
    assert_eq!(decode_page_token(&encode_page_token(42)), Ok(42));
    assert_eq!(decode_page_token(""), Ok(0));
    assert_eq!(
        decode_page_token("not a token"),
        Err(StoreError::InvalidPageToken)
    );
    let zero = URL_SAFE_NO_PAD.encode("audit-after:0");
    assert_eq!(decode_page_token(&zero), Err(StoreError::InvalidPageToken));
    let other = URL_SAFE_NO_PAD.encode("something:5");
    assert_eq!(decode_page_token(&other), Err(StoreError::InvalidPageToken));
}

#[test]
fn micros_round_trip_both_sides_of_epoch() {
    for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_000] {
        assert_eq!(to_micros(from_micros(micros)), micros);
    }
}
