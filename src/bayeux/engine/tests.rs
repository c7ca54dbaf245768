use super::*;
use crate::bayeux::message::parse_body;
use crate::hub::Message;
use crate::hub::MessageId;

const A: ConnRef = ConnRef { loop_id: 0, conn: 1, stream: 0 };
const B: ConnRef = ConnRef { loop_id: 1, conn: 2, stream: 0 };

fn engine() -> Engine {
    Engine::new(Config {
        timeout: Duration::from_secs(30),
        interval: Duration::ZERO,
        max_interval: Duration::from_secs(10),
        max_queue: 3,
        publish_allow: vec!["/**".into()],
        add_fields: false,
        history_on_subscribe: 0,
        auth: None,
    })
}

fn send(e: &mut Engine, from: ConnRef, transport: Transport, body: &str, now: Instant) -> Vec<Output> {
    send_publishing(e, from, transport, body, now, &mut Vec::new())
}

fn send_publishing(
    e: &mut Engine,
    from: ConnRef,
    transport: Transport,
    body: &str,
    now: Instant,
    published: &mut Vec<NewMessage>,
) -> Vec<Output> {
    let mut out = Vec::new();
    let messages = parse_body(body.as_bytes()).expect("test body parses");
    let mut publish = |m: NewMessage, _ip: Option<IpAddr>| {
        published.push(m);
        Ok(())
    };
    e.request(Request { from, transport, messages, remote: None }, now, &mut publish, &mut out);
    out
}

fn replies(out: &[Output]) -> Vec<(ConnRef, Vec<Value>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply { to, messages } => Some((*to, messages.clone())),
            Output::Listen { .. } | Output::Unlisten { .. } | Output::Watch { .. } => None,
        })
        .collect()
}

fn handshake(e: &mut Engine, now: Instant) -> String {
    let out = send(
        e,
        A,
        Transport::LongPolling,
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]"#,
        now,
    );
    let reply = &replies(&out)[0].1[0];
    assert_eq!(reply["successful"], true, "{reply}");
    assert_eq!(reply["id"], "1");
    assert_eq!(reply["advice"]["reconnect"], "retry");
    reply["clientId"].as_str().unwrap().to_string()
}

fn hub(channel: &str, seq: u64, data: &str) -> Arc<Message> {
    Arc::new(Message::new(MessageId::new(9, seq), Arc::from(channel), None, data.into()))
}

#[test]
fn first_connect_is_immediate_later_ones_are_held_until_a_message() {
    let t0 = Instant::now();
    let mut e = engine();
    let cid = handshake(&mut e, t0);
    let connect = format!(
        r#"[{{"channel":"/meta/connect","clientId":"{cid}","connectionType":"long-polling","id":"2"}}]"#
    );
    let out = send(&mut e, A, Transport::LongPolling, &connect, t0);
    assert_eq!(replies(&out)[0].1[0]["successful"], true, "first connect answered at once");
    let sub =
        format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/chat/*","id":"3"}}]"#);
    let out = send(&mut e, A, Transport::LongPolling, &sub, t0);
    assert_eq!(replies(&out)[0].1[0]["subscription"], "/chat/*");
    let out = send(&mut e, B, Transport::LongPolling, &connect, t0);
    assert!(out.is_empty(), "second connect is held: {out:?}");
    let mut out = Vec::new();
    e.deliver(&[hub("chat/room", 1, r#"{"text":"hi"}"#), hub("other", 2, "x")], t0, &mut out);
    let got = replies(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, B, "the held request is answered");
    assert_eq!(got[0].1[0], json!({"channel":"/chat/room","data":{"text":"hi"},"id":"9-1"}));
    assert_eq!(got[0].1[1]["channel"], "/meta/connect");
}

#[test]
fn held_connect_times_out_and_a_newer_connect_releases_the_older() {
    let t0 = Instant::now();
    let mut e = engine();
    let cid = handshake(&mut e, t0);
    let connect =
        format!(r#"[{{"channel":"/meta/connect","clientId":"{cid}","connectionType":"long-polling"}}]"#);
    send(&mut e, A, Transport::LongPolling, &connect, t0);
    assert!(send(&mut e, A, Transport::LongPolling, &connect, t0).is_empty());
    let out = send(&mut e, B, Transport::LongPolling, &connect, t0);
    let got = replies(&out);
    assert_eq!(got.len(), 1, "only the older connect is answered: {got:?}");
    assert_eq!(got[0].0, A);
    let mut out = Vec::new();
    e.tick(t0 + Duration::from_secs(29), &mut out);
    assert!(out.is_empty());
    e.tick(t0 + Duration::from_secs(31), &mut out);
    assert_eq!(replies(&out)[0].0, B, "held connect answered at its timeout");
    // No new connect within max_interval: the session expires.
    let mut out = Vec::new();
    e.tick(t0 + Duration::from_secs(45), &mut out);
    assert_eq!(e.sessions(), 0);
    let out = send(&mut e, A, Transport::LongPolling, &connect, t0 + Duration::from_secs(46));
    let reply = &replies(&out)[0].1[0];
    assert_eq!(
        (reply["successful"].clone(), reply["error"].clone()),
        (json!(false), json!("402::Unknown client"))
    );
    assert_eq!(reply["advice"]["reconnect"], "handshake");
}

#[test]
fn publishes_go_to_the_hub_and_errors_are_bayeux_errors() {
    let t0 = Instant::now();
    let mut e = engine();
    let cid = handshake(&mut e, t0);
    let body = format!(
        r#"[{{"channel":"/chat/room","clientId":"{cid}","data":{{"a":1}},"id":"7"}},
            {{"channel":"/service/echo","clientId":"{cid}","data":1}},
            {{"channel":"/chat/*","clientId":"{cid}","data":1}},
            {{"channel":"/chat/room","clientId":"nobody","data":1}},
            {{"channel":"/meta/nope","clientId":"{cid}"}},
            {{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/meta/connect"}},
            {{"channel":"/meta/subscribe","clientId":"{cid}"}},
            {{"channel":"/bad channel","clientId":"{cid}","data":1}}]"#
    );
    let mut published = Vec::new();
    let out = send_publishing(&mut e, A, Transport::LongPolling, &body, t0, &mut published);
    assert_eq!(published.len(), 1, "only the broadcast publish reaches the hub");
    assert_eq!((&*published[0].channel, &*published[0].data), ("chat/room", r#"{"a":1}"#));
    let r = &replies(&out)[0].1;
    let outcome: Vec<(bool, String)> =
        r.iter().map(|v| (v["successful"] == true, v["error"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(outcome[0], (true, String::new()));
    assert_eq!(outcome[1], (true, String::new()), "service publish acknowledged");
    assert!(outcome[2].1.starts_with("400::"), "{:?}", outcome[2]);
    assert_eq!(outcome[3].1, "402::Unknown client");
    assert_eq!(outcome[4].1, "400::unknown meta channel");
    assert!(outcome[5].1.starts_with("403::"), "{:?}", outcome[5]);
    assert_eq!(outcome[6].1, "400::no subscription given");
    assert!(outcome[7].1.starts_with("400::"), "{:?}", outcome[7]);
    assert_eq!(r[0]["id"], "7");
}

#[test]
fn websocket_sessions_get_deliveries_pushed_and_queues_are_bounded() {
    let t0 = Instant::now();
    let mut e = engine();
    let out = send(
        &mut e,
        A,
        Transport::WebSocket,
        r#"[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket"]}]"#,
        t0,
    );
    let cid = replies(&out)[0].1[0]["clientId"].as_str().unwrap().to_string();
    send(
        &mut e,
        A,
        Transport::WebSocket,
        &format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/a/**"}}]"#),
        t0,
    );
    let mut out = Vec::new();
    e.deliver(&[hub("a/b/c", 1, "plain text")], t0, &mut out);
    assert_eq!(replies(&out), vec![(A, vec![json!({"channel":"/a/b/c","data":"plain text","id":"9-1"})])]);
    // A polling session that never connects again overflows its queue and is dropped.
    let cid2 = handshake(&mut e, t0);
    send(
        &mut e,
        B,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid2}","subscription":"/q"}}]"#),
        t0,
    );
    let mut out = Vec::new();
    let burst: Vec<Arc<Message>> = (0..4).map(|i| hub("q", i, "x")).collect();
    e.deliver(&burst, t0, &mut out);
    assert_eq!(e.sessions(), 1, "over max_queue the session is dropped");
    e.closed(A, t0);
    e.tick(t0 + Duration::from_secs(11), &mut Vec::new());
    assert_eq!(e.sessions(), 0, "a closed WebSocket's session expires");
}

#[test]
fn unsupported_connection_types_and_disconnect() {
    let t0 = Instant::now();
    let mut e = engine();
    let out = send(
        &mut e,
        A,
        Transport::LongPolling,
        r#"[{"channel":"/meta/handshake","supportedConnectionTypes":["flash"]}]"#,
        t0,
    );
    let reply = &replies(&out)[0].1[0];
    assert_eq!(reply["error"], "301::no supported connection type");
    let cid = handshake(&mut e, t0);
    let out = send(
        &mut e,
        A,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/disconnect","clientId":"{cid}"}}]"#),
        t0,
    );
    assert_eq!(replies(&out)[0].1[0]["successful"], true);
    assert_eq!(e.sessions(), 0);
}

#[test]
fn a_connect_that_finds_queued_messages_returns_them_at_once() {
    let t0 = Instant::now();
    let mut e = engine();
    let cid = handshake(&mut e, t0);
    let connect = format!(r#"[{{"channel":"/meta/connect","clientId":"{cid}"}}]"#);
    send(&mut e, A, Transport::LongPolling, &connect, t0);
    send(
        &mut e,
        A,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/q"}}]"#),
        t0,
    );
    e.deliver(&[hub("q", 1, "1"), hub("q", 2, "two")], t0, &mut Vec::new());
    let out = send(&mut e, B, Transport::CallbackPolling, &connect, t0);
    let got = &replies(&out)[0].1;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[0]["data"].clone(), got[1]["data"].clone()), (json!(1), json!("two")));
    assert_eq!(got[2]["channel"], "/meta/connect");
}

#[test]
fn ext_is_carried_and_server_fields_are_added() {
    let t0 = Instant::now();
    let mut e = engine();
    e.config.add_fields = true;
    let cid = handshake(&mut e, t0);
    let mut published = Vec::new();
    let body = format!(r#"[{{"channel":"/x","clientId":"{cid}","data":1,"ext":{{"k":"v"}}}}]"#);
    let mut out = Vec::new();
    let messages = parse_body(body.as_bytes()).unwrap();
    let remote = Some("10.1.2.3".parse().unwrap());
    let mut publish = |m: NewMessage, _ip: Option<IpAddr>| {
        published.push(m);
        Ok(())
    };
    e.request(
        Request { from: A, transport: Transport::LongPolling, messages, remote },
        t0,
        &mut publish,
        &mut out,
    );
    let ext: Value = serde_json::from_str(published[0].ext.as_deref().unwrap()).unwrap();
    assert_eq!(ext, json!({"k":"v","halley":{"publisher_ip":"10.1.2.3"}}));
    // Delivered with the publisher's ext plus the time and subscriber count.
    send(
        &mut e,
        A,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/x"}}]"#),
        t0,
    );
    let m = Message::new(MessageId::new(77, 0), Arc::from("x"), None, "1".into())
        .with_ext(published[0].ext.clone());
    let delivery = e.delivery(&m, "/x", 1);
    assert_eq!(
        delivery["ext"],
        json!({"k":"v","halley":{"publisher_ip":"10.1.2.3","published_ms":77,"subscribers":1}})
    );
}

#[test]
fn history_on_subscribe_is_sent_once_even_when_the_same_message_arrives_live() {
    let t0 = Instant::now();
    let mut e = engine();
    e.config.history_on_subscribe = 2;
    let cid = handshake(&mut e, t0);
    send(
        &mut e,
        A,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/connect","clientId":"{cid}"}}]"#),
        t0,
    );
    let out = send(
        &mut e,
        A,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/subscribe","clientId":"{cid}","subscription":"/h"}}]"#),
        t0,
    );
    let tag = out
        .iter()
        .find_map(|o| match o {
            Output::Listen { channel, backlog: 2, tag } if &**channel == "h" => Some(*tag),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Listen with a backlog of 2 in {out:?}"));
    // A live message published before the hub took the subscription arrives
    // first; it is in the history too, so it waits for it.
    e.deliver(&[hub("h", 2, "b")], t0, &mut Vec::new());
    let old = [hub("h", 1, "a"), hub("h", 2, "b")];
    e.deliver_history(tag, &old, t0, &mut Vec::new());
    e.deliver(&[hub("h", 2, "b"), hub("h", 3, "c")], t0, &mut Vec::new());
    let out = send(
        &mut e,
        B,
        Transport::LongPolling,
        &format!(r#"[{{"channel":"/meta/connect","clientId":"{cid}"}}]"#),
        t0,
    );
    let data: Vec<Value> =
        replies(&out)[0].1.iter().filter(|v| v["channel"] == "/h").map(|v| v["data"].clone()).collect();
    assert_eq!(data, vec![json!("a"), json!("b"), json!("c")]);
}

#[test]
fn subscriptions_are_hub_subscriptions() {
    let t0 = Instant::now();
    let mut e = engine();
    let cid = handshake(&mut e, t0);
    let subscribe = |e: &mut Engine, channel: &str, sub: &str| {
        let body = format!(r#"[{{"channel":"{channel}","clientId":"{cid}","subscription":"{sub}"}}]"#);
        send(e, A, Transport::LongPolling, &body, t0)
    };
    let hub_side = |out: &[Output]| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Listen { channel, .. } => Some(format!("+{channel}")),
                Output::Unlisten { channel } => Some(format!("-{channel}")),
                Output::Watch { pattern, delta } => Some(format!("{delta:+} {pattern:?}")),
                Output::Reply { .. } => None,
            })
            .collect()
    };
    assert_eq!(hub_side(&subscribe(&mut e, "/meta/subscribe", "/a/b")), ["+a/b"]);
    assert_eq!(
        hub_side(&subscribe(&mut e, "/meta/subscribe", "/a/b")),
        Vec::<String>::new(),
        "once per session"
    );
    assert_eq!(hub_side(&subscribe(&mut e, "/meta/subscribe", "/a/**")), [r#"+1 Descendants("a")"#]);
    assert_eq!(hub_side(&subscribe(&mut e, "/meta/subscribe", "/*")), [r#"+1 Children("")"#]);
    assert_eq!(hub_side(&subscribe(&mut e, "/meta/unsubscribe", "/a/**")), [r#"-1 Descendants("a")"#]);
    assert_eq!(e.subscriptions(), 2);
    let body = format!(r#"[{{"channel":"/meta/disconnect","clientId":"{cid}"}}]"#);
    let mut gone = hub_side(&send(&mut e, A, Transport::LongPolling, &body, t0));
    gone.sort();
    assert_eq!(gone, [r#"-1 Children("")"#, "-a/b"]);
    assert_eq!(e.subscriptions(), 0);
}
