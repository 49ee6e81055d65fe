//! gRPC frames of protobuf messages, walked incrementally.
//!
//! A gRPC message travels as a length-prefixed frame: one flag byte
//! (1 = compressed), a 4-byte big-endian length, then the protobuf bytes
//! (gRPC over HTTP/2, "Length-Prefixed-Message"). The reader follows a few
//! watched field-number paths through each frame's message, skipping every
//! other field by its wire type, and reports what it finds; it never
//! buffers more than one watched string.

/// Deepest nesting any watched field path needs.
const MAX_DEPTH: usize = 3;

/// Protobuf field numbers are 29 bits wide.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Why a stream cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A frame with the compressed flag: reading it needs the codec.
    Compressed,
    /// A frame flag other than 0 or 1.
    Flag,
    /// The stream or a field ended inside a frame header, tag, varint or
    /// length-delimited value.
    Truncated,
    /// A varint longer than 10 bytes or wider than 64 bits.
    Varint,
    /// Field number 0 or above 2^29 - 1.
    FieldNumber,
    /// Wire type 3 or 4: groups are not part of proto3.
    Group,
    /// Wire type 6 or 7.
    WireType,
}

/// What the reader reports while it walks the watched paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A watched message field begins. Offsets are absolute stream offsets.
    Open {
        target: usize,
        len_at: u64,
        len_size: u8,
        len: u64,
    },
    /// The watched message field opened last ends.
    Close { target: usize },
    /// A watched string field: `None` when it is not UTF-8 or longer than
    /// the value limit.
    Str {
        target: usize,
        value: Option<&'a str>,
    },
    /// A frame's message ended; the frame header is at `frame_at`.
    FrameEnd { frame_at: u64, len: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Region {
    /// The watched container this region is, if it is one.
    target: Option<usize>,
    /// Absolute offset just past its last byte.
    end: u64,
}

#[derive(Clone, Copy, Debug)]
enum Token {
    /// Reading a field tag (`value` accumulated so far; `shift == 0` means
    /// no byte of it read yet, a field boundary).
    Tag { value: u64, shift: u32 },
    /// Skipping a varint value.
    Varint { shift: u32 },
    /// Reading the length of a length-delimited field starting at `at`.
    Length {
        field: u32,
        value: u64,
        shift: u32,
        at: u64,
    },
    /// Skipping bytes up to `end`.
    Skip { end: u64 },
    /// Copying a watched string up to `end`.
    Capture { target: usize, end: u64 },
}

#[derive(Clone, Copy, Debug)]
enum Frame {
    /// `have` bytes of the 5-byte frame header read.
    Header {
        bytes: [u8; 5],
        have: usize,
    },
    Message,
}

/// Walks gRPC frames of protobuf messages incrementally: each call gets
/// only new bytes, any split point works, and memory is bounded by the
/// watched path depth and the value limit.
pub struct Reader {
    /// Watched field-number paths from a frame's top-level message.
    targets: &'static [&'static [u32]],
    max_value: usize,
    offset: u64,
    frame: Frame,
    frame_at: u64,
    frame_len: u32,
    /// The frame's message, then each watched container entered.
    regions: Vec<Region>,
    /// Field numbers of the entered containers.
    fields: Vec<u32>,
    token: Token,
    capture: Vec<u8>,
    pub failed: Option<Invalid>,
}

/// Whether the reader's caller wants more events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// What one `feed` got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every byte read; more may come.
    NeedMore,
    /// The sink asked to stop.
    Stopped,
    Failed(Invalid),
}

/// One varint byte into an accumulator; `Ok(true)` when it was the last.
pub fn varint_step(value: &mut u64, shift: &mut u32, byte: u8) -> Result<bool, Invalid> {
    let bits = u64::from(byte & 0x7f);
    // The 10th byte may only carry the 64th bit.
    if *shift > 63 || (*shift == 63 && bits > 1) {
        return Err(Invalid::Varint);
    }
    *value |= bits << *shift;
    *shift += 7;
    Ok(byte & 0x80 == 0)
}

impl Reader {
    pub fn new(targets: &'static [&'static [u32]], max_value: usize) -> Self {
        Reader {
            targets,
            max_value,
            offset: 0,
            frame: Frame::Header {
                bytes: [0; 5],
                have: 0,
            },
            frame_at: 0,
            frame_len: 0,
            regions: Vec::with_capacity(MAX_DEPTH + 1),
            fields: Vec::with_capacity(MAX_DEPTH),
            token: Token::Tag { value: 0, shift: 0 },
            capture: Vec::new(),
            failed: None,
        }
    }

    /// Between frames, or at a field boundary of a complete frame.
    pub fn at_frame_boundary(&self) -> bool {
        matches!(self.frame, Frame::Header { have: 0, .. })
    }

    fn fail(&mut self, why: Invalid) -> Progress {
        self.failed = Some(why);
        Progress::Failed(why)
    }

    /// The watched target a field at the current depth is, and whether it
    /// is a container (some longer target runs through it).
    fn target_of(&self, field: u32) -> (Option<usize>, bool) {
        let depth = self.fields.len();
        let mut exact = None;
        let mut container = false;
        for (i, t) in self.targets.iter().enumerate() {
            if t.len() <= depth
                || t.get(..depth) != Some(self.fields.as_slice())
                || t.get(depth) != Some(&field)
            {
                continue;
            }
            if t.len() == depth + 1 {
                exact = exact.or(Some(i));
            } else {
                container = true;
            }
        }
        (exact, container)
    }

    pub fn feed(&mut self, chunk: &[u8], sink: &mut dyn FnMut(Event<'_>) -> Flow) -> Progress {
        if let Some(why) = self.failed {
            return Progress::Failed(why);
        }
        let mut i = 0usize;
        loop {
            if let Frame::Header {
                mut bytes,
                mut have,
            } = self.frame
            {
                let Some(&b) = chunk.get(i) else {
                    return Progress::NeedMore;
                };
                if let Some(slot) = bytes.get_mut(have) {
                    *slot = b;
                }
                have += 1;
                i += 1;
                self.offset += 1;
                if have < bytes.len() {
                    self.frame = Frame::Header { bytes, have };
                    continue;
                }
                let [flag, l0, l1, l2, l3] = bytes;
                match flag {
                    0 => {}
                    1 => return self.fail(Invalid::Compressed),
                    _ => return self.fail(Invalid::Flag),
                }
                self.frame_len = u32::from_be_bytes([l0, l1, l2, l3]);
                self.frame_at = self.offset - 5;
                self.regions.clear();
                self.fields.clear();
                self.regions.push(Region {
                    target: None,
                    end: self.offset + u64::from(self.frame_len),
                });
                self.token = Token::Tag { value: 0, shift: 0 };
                self.frame = Frame::Message;
                continue;
            }
            let Some(&region) = self.regions.last() else {
                return self.fail(Invalid::Truncated);
            };
            if matches!(self.token, Token::Tag { shift: 0, .. }) && self.offset == region.end {
                self.regions.pop();
                let flow = if self.regions.is_empty() {
                    self.frame = Frame::Header {
                        bytes: [0; 5],
                        have: 0,
                    };
                    sink(Event::FrameEnd {
                        frame_at: self.frame_at,
                        len: self.frame_len,
                    })
                } else {
                    self.fields.pop();
                    match region.target {
                        Some(target) => sink(Event::Close { target }),
                        None => Flow::Continue,
                    }
                };
                if flow == Flow::Stop {
                    return Progress::Stopped;
                }
                continue;
            }
            if self.offset >= region.end {
                // A tag, varint or length ran past its enclosing message.
                return self.fail(Invalid::Truncated);
            }
            let rest = chunk.get(i..).unwrap_or(&[]);
            if rest.is_empty() {
                return Progress::NeedMore;
            }
            match self.token {
                Token::Skip { end } | Token::Capture { end, .. } => {
                    let room = usize::try_from(end - self.offset).unwrap_or(usize::MAX);
                    let take = room.min(rest.len());
                    if let Token::Capture { .. } = self.token {
                        let keep = (self.max_value + 1).saturating_sub(self.capture.len());
                        self.capture
                            .extend_from_slice(rest.get(..take.min(keep)).unwrap_or(&[]));
                    }
                    i += take;
                    self.offset += take as u64;
                    if self.offset == end {
                        if let Token::Capture { target, .. } = self.token {
                            let value = if self.capture.len() > self.max_value {
                                None
                            } else {
                                std::str::from_utf8(&self.capture).ok()
                            };
                            let flow = sink(Event::Str { target, value });
                            self.capture.clear();
                            if flow == Flow::Stop {
                                self.token = Token::Tag { value: 0, shift: 0 };
                                return Progress::Stopped;
                            }
                        }
                        self.token = Token::Tag { value: 0, shift: 0 };
                    }
                }
                Token::Tag {
                    mut value,
                    mut shift,
                } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    match varint_step(&mut value, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => self.token = Token::Tag { value, shift },
                        Ok(true) => {
                            if let Err(why) = self.on_tag(value, region.end) {
                                return self.fail(why);
                            }
                        }
                    }
                }
                Token::Varint { mut shift } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    let mut ignored = 0;
                    match varint_step(&mut ignored, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => self.token = Token::Varint { shift },
                        Ok(true) => self.token = Token::Tag { value: 0, shift: 0 },
                    }
                }
                Token::Length {
                    field,
                    mut value,
                    mut shift,
                    at,
                } => {
                    let b = rest.first().copied().unwrap_or(0);
                    i += 1;
                    self.offset += 1;
                    match varint_step(&mut value, &mut shift, b) {
                        Err(why) => return self.fail(why),
                        Ok(false) => {
                            self.token = Token::Length {
                                field,
                                value,
                                shift,
                                at,
                            }
                        }
                        Ok(true) => {
                            if value > region.end - self.offset {
                                return self.fail(Invalid::Truncated);
                            }
                            let end = self.offset + value;
                            self.token = Token::Tag { value: 0, shift: 0 };
                            match self.target_of(field) {
                                (exact, true) if self.fields.len() < MAX_DEPTH => {
                                    self.regions.push(Region { target: exact, end });
                                    self.fields.push(field);
                                    if let Some(target) = exact {
                                        let len_size = u8::try_from(self.offset - at).unwrap_or(0);
                                        let flow = sink(Event::Open {
                                            target,
                                            len_at: at,
                                            len_size,
                                            len: value,
                                        });
                                        if flow == Flow::Stop {
                                            return Progress::Stopped;
                                        }
                                    }
                                }
                                // An empty value is complete at once: it may
                                // end its message, where no byte follows.
                                (Some(target), false) if value == 0 => {
                                    if sink(Event::Str {
                                        target,
                                        value: Some(""),
                                    }) == Flow::Stop
                                    {
                                        return Progress::Stopped;
                                    }
                                }
                                (Some(target), false) => {
                                    self.token = Token::Capture { target, end };
                                }
                                _ if value == 0 => {}
                                _ => self.token = Token::Skip { end },
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_tag(&mut self, tag: u64, region_end: u64) -> Result<(), Invalid> {
        let field = tag >> 3;
        if field == 0 || field > MAX_FIELD {
            return Err(Invalid::FieldNumber);
        }
        let field = u32::try_from(field).map_err(|_| Invalid::FieldNumber)?;
        let fixed = |n: u64| {
            if region_end - self.offset < n {
                Err(Invalid::Truncated)
            } else {
                Ok(Token::Skip {
                    end: self.offset + n,
                })
            }
        };
        self.token = match tag & 7 {
            0 => Token::Varint { shift: 0 },
            1 => fixed(8)?,
            2 => Token::Length {
                field,
                value: 0,
                shift: 0,
                at: self.offset,
            },
            5 => fixed(4)?,
            3 | 4 => return Err(Invalid::Group),
            _ => return Err(Invalid::WireType),
        };
        Ok(())
    }
}

pub fn encode_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
