//! The demo page and its same-origin publish helper. The page in a real
//! browser is exercised by tests/browser/demo.test.mjs.
mod common;
use common::*;

#[test]
fn demo_page_is_served_at_the_root_with_the_ingest_address() {
    let server = Server::start(&[]);
    for path in ["/", "/index.html"] {
        let resp = get(server.public, path);
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
        let page = resp.text();
        assert!(
            page.contains(&format!("const INGEST = \"{}\"", server.ingest)),
            "ingest address not filled in"
        );
        for transport in ["sse", "ws", "stream", "longpoll", "jsonp", "iframe"] {
            assert!(page.contains(&format!("<option value=\"{transport}\"")), "no {transport} option");
        }
    }
    let resp = request(server.public, "POST", "/", &[], b"x");
    assert_json_error(&resp, 405, "GET", "POST /");
}

#[test]
fn demo_publish_helper_is_on_for_loopback_and_reaches_subscribers() {
    let server = Server::start(&[]);
    let mut sub = StreamClient::open(server.public, "/sub/demo", &[("Accept", "text/event-stream")]);
    assert_eq!(sub.status, 200);
    let resp = request(server.public, "POST", "/demo/pub/demo?event=note", &[], b"from the page");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let ack = resp.json();
    assert_eq!(ack["subscribers"], 1, "{ack}");
    let ev = sub.next_event().expect("event");
    assert_eq!(
        (ev.id.as_deref(), ev.event.as_deref(), ev.data.as_str()),
        (ack["id"].as_str(), Some("note"), "from the page")
    );
    // The same rules as the ingest port.
    let resp = request(server.public, "POST", "/demo/pub/bad%20name", &[], b"x");
    assert_json_error(&resp, 400, "1 to 128 bytes", "bad channel through the helper");
    let resp = request(server.public, "GET", "/demo/pub/demo", &[], b"");
    assert_json_error(&resp, 405, "POST", "GET on the helper");
}

#[test]
fn demo_publish_helper_can_be_turned_off() {
    let server = Server::start(&["--demo-publish", "off"]);
    let resp = request(server.public, "POST", "/demo/pub/demo", &[], b"x");
    assert_json_error(&resp, 404, "ingest port", "helper off");
    assert_eq!(get(server.public, "/").status, 200, "the page itself stays");
}

#[test]
fn favicon_is_an_empty_answer_so_the_page_logs_no_error() {
    let server = Server::start(&[]);
    let resp = get(server.public, "/favicon.ico");
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
}
