//! Placeholder until the Pushlet engine lands: answers every request with a
//! `nack` saying Pushlet is not available yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::{render_end, render_event, render_start, Format};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub loop_id: usize,
    pub conn: u64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub lease: Duration,
    pub max_queue: usize,
    pub read_timeout: Duration,
    pub pull_wait_ms: (u64, u64),
    pub poll_wait_ms: (u64, u64),
    pub publish_allow: Vec<String>,
}

pub struct Request {
    pub from: ConnRef,
    pub fields: Vec<(String, String)>,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Whole { to: ConnRef, content_type: &'static str, body: Vec<u8> },
    Open { to: ConnRef, content_type: &'static str, body: Vec<u8> },
    More { to: ConnRef, body: Vec<u8> },
    End { to: ConnRef, body: Vec<u8> },
}

pub type PublishFn<'a> = &'a mut dyn FnMut(crate::fanout::NewMessage) -> Result<(), String>;

pub struct Engine;

impl Engine {
    pub fn new(_config: Config) -> Engine {
        Engine
    }
    pub fn sessions(&self) -> usize {
        0
    }
    pub fn request(&mut self, req: Request, _now: Instant, _publish: PublishFn<'_>, out: &mut Vec<Output>) {
        let f = Format::XmlStrict;
        let event = vec![
            ("p_event".to_string(), "nack".to_string()),
            ("p_reason".to_string(), "Pushlet is not available yet".to_string()),
        ];
        let mut body = render_start(f);
        body.extend(render_event(f, &event));
        body.extend(render_end(f));
        out.push(Output::Whole { to: req.from, content_type: f.content_type(), body });
    }
    pub fn deliver(&mut self, _messages: &[Arc<crate::hub::Message>], _now: Instant, _out: &mut Vec<Output>) {
    }
    pub fn tick(&mut self, _now: Instant, _out: &mut Vec<Output>) {}
    pub fn closed(&mut self, _conn: ConnRef, _now: Instant) {}
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }
}
