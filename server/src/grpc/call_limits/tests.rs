use super::*;

fn prefix(len: u32) -> Vec<u8> {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

#[test]
fn a_message_reserves_its_declared_length_at_its_prefix() {
    let budget = Arc::new(Semaphore::new(1000));
    let mut meter = Meter::new(budget.clone(), 800, true);
    // The prefix may arrive split across frames.
    meter.feed(&prefix(300)[..2]).unwrap();
    assert_eq!(budget.available_permits(), 1000);
    meter.feed(&prefix(300)[2..]).unwrap();
    assert_eq!(budget.available_permits(), 1000 - 305);
    meter.feed(&[7; 300]).unwrap();
    assert_eq!(budget.available_permits(), 1000 - 305);
    // The next message releases the first one's budget and reserves its own.
    meter.feed(&prefix(10)).unwrap();
    assert_eq!(budget.available_permits(), 1000 - 15);
    drop(meter);
    assert_eq!(budget.available_permits(), 1000);
}

#[test]
fn a_claim_beyond_the_budget_is_refused_before_its_bytes_arrive() {
    let budget = Arc::new(Semaphore::new(1000));
    let mut held = Meter::new(budget.clone(), 800, true);
    held.feed(&prefix(700)).unwrap();
    let mut second = Meter::new(budget.clone(), 800, true);
    assert!(second.feed(&prefix(400)).is_err());
    drop(held);
    second.feed(&prefix(400)).unwrap();
}

#[test]
fn bytes_beyond_the_largest_message_are_metered_as_they_arrive() {
    let budget = Arc::new(Semaphore::new(1000));
    let mut meter = Meter::new(budget.clone(), 100, true);
    meter.feed(&prefix(u32::MAX)).unwrap();
    assert_eq!(budget.available_permits(), 1000 - 105);
    meter.feed(&[0; 150]).unwrap();
    assert_eq!(budget.available_permits(), 1000 - 105 - 50);
    assert!(meter.feed(&[0; 900]).is_err());
}

#[test]
fn bodies_that_are_not_grpc_are_metered_byte_by_byte() {
    let budget = Arc::new(Semaphore::new(100));
    let mut meter = Meter::new(budget.clone(), 1000, false);
    meter.feed(&[0; 60]).unwrap();
    assert_eq!(budget.available_permits(), 40);
    assert!(meter.feed(&[0; 60]).is_err());
}
