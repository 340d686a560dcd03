//! The jobs themselves: ids and counters only.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Job, QueueKind};

/// Check a burst at (or after) `at_ms`; flush it if it is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlushBurst {
    pub burst_id: Uuid,
    /// The epoch-ms the check was scheduled for: each re-schedule is a distinct job.
    pub at_ms: i64,
}

impl Job for FlushBurst {
    const QUEUE: QueueKind = QueueKind::Flush;
    const NAME: &'static str = "flush-burst";
    fn job_id(&self) -> String {
        format!("flush.{}.{}", self.burst_id.simple(), self.at_ms)
    }
}

/// Generate (or retry generating) the reply of one generation of a burst.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateReply {
    pub burst_id: Uuid,
    pub generation: i32,
    pub attempt: u32,
    /// How many times this attempt already looked for media still being processed.
    #[serde(default)]
    pub wait: u32,
}

impl GenerateReply {
    /// The first attempt at `generation` of a burst.
    pub fn first(burst_id: Uuid, generation: i32) -> Self {
        Self {
            burst_id,
            generation,
            attempt: 1,
            wait: 0,
        }
    }
}

impl Job for GenerateReply {
    const QUEUE: QueueKind = QueueKind::Ai;
    const NAME: &'static str = "generate-reply";
    fn job_id(&self) -> String {
        let base = format!("ai.{}.{}.{}", self.burst_id.simple(), self.generation, self.attempt);
        match self.wait {
            0 => base,
            w => format!("{base}.w{w}"),
        }
    }
}

/// Download and understand one medium (transcribe, extract, fetch the image), started
/// when the message is accepted so it overlaps the debounce window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessMedia {
    pub message_id: Uuid,
    pub attempt: u32,
    /// Set by the sweeper (a distinct id; see [`DeliverPostback::sweep`]).
    #[serde(default)]
    pub sweep: Option<i64>,
}

impl ProcessMedia {
    /// The first attempt at a message's medium.
    pub fn first(message_id: Uuid) -> Self {
        Self {
            message_id,
            attempt: 1,
            sweep: None,
        }
    }
}

impl Job for ProcessMedia {
    const QUEUE: QueueKind = QueueKind::Media;
    const NAME: &'static str = "process-media";
    fn job_id(&self) -> String {
        match self.sweep {
            None => format!("media.{}.{}", self.message_id.simple(), self.attempt),
            Some(n) => format!("media.{}.{}.s{n}", self.message_id.simple(), self.attempt),
        }
    }
}

/// Attempt number `attempt` of a postback delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverPostback {
    pub delivery_id: Uuid,
    pub attempt: i32,
    /// A manual retry (`POST /backend/deliveries/{id}/retry`) is one attempt, no schedule.
    #[serde(default)]
    pub manual: bool,
    /// Set by the sweeper: a distinct id, because a failed job under the plain id stays
    /// in Redis (retention) and would make the re-enqueue a silent no-op.
    #[serde(default)]
    pub sweep: Option<i64>,
}

impl DeliverPostback {
    /// The first, scheduled attempt at a delivery.
    pub fn first(delivery_id: Uuid) -> Self {
        Self {
            delivery_id,
            attempt: 1,
            manual: false,
            sweep: None,
        }
    }
}

impl Job for DeliverPostback {
    const QUEUE: QueueKind = QueueKind::Postback;
    const NAME: &'static str = "deliver-postback";
    fn job_id(&self) -> String {
        match self.sweep {
            None => format!("pb.{}.{}", self.delivery_id.simple(), self.attempt),
            Some(n) => format!("pb.{}.{}.s{n}", self.delivery_id.simple(), self.attempt),
        }
    }
}

/// Turn one stored inbound webhook event (a provider's message or status) into a lead's
/// message in the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInbound {
    pub event_id: Uuid,
    /// How many times it already waited: for an earlier message of the same sender, or for
    /// the message a status report is about to have its provider id recorded.
    #[serde(default)]
    pub wait: u32,
}

impl Job for ProcessInbound {
    const QUEUE: QueueKind = QueueKind::Inbound;
    const NAME: &'static str = "process-inbound";
    fn job_id(&self) -> String {
        match self.wait {
            0 => format!("in.{}", self.event_id.simple()),
            w => format!("in.{}.w{w}", self.event_id.simple()),
        }
    }
}

/// Attempt number `attempt` of sending one outbox message through its channel's provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMessage {
    pub outbox_id: Uuid,
    pub attempt: i32,
    /// How many times this attempt already waited for the channel's send rate.
    #[serde(default)]
    pub wait: u32,
}

impl SendMessage {
    /// The first attempt at sending an outbox message.
    pub fn first(outbox_id: Uuid) -> Self {
        Self {
            outbox_id,
            attempt: 1,
            wait: 0,
        }
    }
}

impl Job for SendMessage {
    const QUEUE: QueueKind = QueueKind::Send;
    const NAME: &'static str = "send-message";
    fn job_id(&self) -> String {
        match self.wait {
            0 => format!("send.{}.{}", self.outbox_id.simple(), self.attempt),
            w => format!("send.{}.{}.r{w}", self.outbox_id.simple(), self.attempt),
        }
    }
}

/// The periodic jobs the scheduler enqueues, one run per tick of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Finds work that should exist in Redis and doesn't; polls mailboxes on its clock.
    Sweep,
    /// Checks every active WhatsApp channel's connection through its provider.
    Connections,
    /// Renews Google Calendar push channels close to expiry.
    Calendars,
    /// Removes old finished queue entries and attempt rows.
    Housekeeping,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::Sweep, Task::Connections, Task::Calendars, Task::Housekeeping];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sweep => "sweep",
            Self::Connections => "connections",
            Self::Calendars => "calendars",
            Self::Housekeeping => "housekeeping",
        }
    }
}

/// Tick number `tick` of a periodic task (ticks count intervals since the epoch, so every
/// scheduler replica numbers them alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub task: Task,
    pub tick: i64,
}

impl Job for Tick {
    const QUEUE: QueueKind = QueueKind::Scheduled;
    const NAME: &'static str = "tick";
    fn job_id(&self) -> String {
        format!("{}.{}", self.task.name(), self.tick)
    }
}

/// Does nothing: measures the job layer itself (benchmark, memory test).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noop {
    pub n: u64,
    /// Distinguishes runs sharing a prefix.
    pub run: Uuid,
}

impl Job for Noop {
    const QUEUE: QueueKind = QueueKind::Bench;
    const NAME: &'static str = "noop";
    fn job_id(&self) -> String {
        format!("noop.{}.{}", self.run.simple(), self.n)
    }
}

/// Check one e-mail channel's mailbox for new mail. `slot` is the poll interval the
/// check belongs to, so sweeps within one interval enqueue one poll.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollMailbox {
    pub channel_id: Uuid,
    pub slot: i64,
}

impl Job for PollMailbox {
    const QUEUE: QueueKind = QueueKind::Mail;
    const NAME: &'static str = "poll-mailbox";
    fn job_id(&self) -> String {
        format!("mail.{}.{}", self.channel_id.simple(), self.slot)
    }
}

/// What a calendar job does with its push channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarStep {
    /// Create the channel at Google (a new watch, or the successor of a renewal).
    Watch,
    /// Replace the channel before it expires: create its successor, then stop it.
    Renew,
    /// Stop the channel at Google (`channels.stop`).
    Stop,
    /// List the calendar's changes since the stored sync token.
    Sync,
}

/// One step on one Google Calendar push channel. `n` makes the id unique per attempt
/// (watch, renew, stop) or per push message number (sync).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalendarJob {
    pub step: CalendarStep,
    pub channel_id: Uuid,
    pub n: i64,
    /// Set when the calendar tick resumes a step whose job was lost: a distinct id, since
    /// a finished job under the plain id stays in Redis for a while.
    #[serde(default)]
    pub resumed: Option<i64>,
}

impl Job for CalendarJob {
    const QUEUE: QueueKind = QueueKind::Calendar;
    const NAME: &'static str = "calendar";
    fn job_id(&self) -> String {
        let step = match self.step {
            CalendarStep::Watch => "watch",
            CalendarStep::Renew => "renew",
            CalendarStep::Stop => "stop",
            CalendarStep::Sync => "sync",
        };
        match self.resumed {
            None => format!("cal.{step}.{}.{}", self.channel_id.simple(), self.n),
            Some(r) => format!("cal.{step}.{}.{}.r{r}", self.channel_id.simple(), self.n),
        }
    }
}
