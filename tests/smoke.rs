mod common;
use common::*;

#[test]
fn sse_subscriber_receives_a_published_message() {
    let server = Server::start(&[]);
    let mut sub = StreamClient::open(server.public, "/sub/news", &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200);
    let id = server.publish_id("news", "hello");
    let ev = sub.next_event().expect("an event");
    assert_eq!(ev, SseEvent { id: Some(id), event: None, data: "hello".into() });
}
