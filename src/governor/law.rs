//! The control law: from the recent window, the ladder and the law's own state to "stay" or "step
//! to rung R, because ...".
//!
//! It is a pure function of (settings, window figures, ladder, state, now) so every behaviour
//! (sustained periods, hysteresis, cool-down, the ceiling, pins) is tested without a clock or a
//! model. The rules:
//!
//! - **Over budget** = the window's end-to-end p99 above the budget, or more than `max_miss_rate`
//!   of its frames late (and at least two). Sustained for `down_after` with frames still late in
//!   the last half of that period (a single burst — another process's hiccup — keeps the window
//!   over budget as long as the window remembers it, but is over when the burst is), the
//!   governor steps down to the largest lower rung predicted to fit with headroom (the lowest
//!   when none is).
//! - **Prediction**: rung R's predicted processing p99 = the serving rung's window processing
//!   p99 x (R's measured p10 / the serving rung's measured p10): the live tail, scaled by the
//!   ratio of the two models' costs measured at load. The ratio uses the fast runs (p10): on a
//!   busy board, or a loader at lower priority, preemptions inflate the medians and tails of a
//!   few dozen runs unevenly, and the fast runs stay near each model's real cost. Its end-to-end p99 adds the window's base
//!   overhead (capture to the start of processing) and, when the predicted processing is longer
//!   than a frame period, one period of queueing: a model that cannot keep up with the source
//!   runs each newest frame up to a period after its capture. The slowdown shown (`/status`, log
//!   lines) is the window's processing p50 over the serving rung's measured p50.
//! - **Step up** when the next rung's prediction stays within `budget x (1 - headroom)` for
//!   `up_after`, to the largest rung predicted to fit (a load that ends should not cost a climb of
//!   one rung per cool-down), not sooner than `cool_down` after any step, and not when
//!   `max_steps_per_minute` steps were taken in the last minute. A step up that fails (is
//!   followed by a step down within the probation period) doubles the wait before the next step
//!   up into that rung, up to [`MAX_PENALTY`] x `up_after`: a rung whose measurement was too
//!   optimistic is retried ever more rarely instead of every few seconds, and meanwhile the
//!   governor may still step up to the rungs below it.
//! - **Hysteresis**: down is judged against the budget, up against the budget less the headroom,
//!   so a rung that fits is never both "over" and "worth leaving for a larger one".
//! - **Pin**: a pinned rung is stepped to at once and held whatever the figures.
//!
//! Without enough frames of the serving rung in the window (just after a step, or a stalled
//! source) nothing is judged.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::time::MonoTime;

/// What the recent window says about the serving rung (its own frames only).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Frames completed (on time, late or cancelled).
    pub frames: u32,
    /// Late or cancelled frames.
    pub misses: u32,
    /// Late or cancelled frames in the last half of `down_after`: an overload still going on,
    /// not one burst the window still remembers.
    pub recent_misses: u32,
    /// End-to-end (capture to result) p99, ms.
    pub p99_ms: f64,
    /// Processing (preprocess + inference + postprocess) p99, ms.
    pub proc_p99_ms: f64,
    /// Processing p50, ms.
    pub proc_p50_ms: f64,
}

impl Figures {
    pub fn miss_rate(&self) -> f64 {
        if self.frames == 0 {
            0.0
        } else {
            f64::from(self.misses) / f64::from(self.frames)
        }
    }
}

/// A rung's latency as measured at load (processing: preprocess + inference + postprocess).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The fast runs: the model's cost with little interference (what ratios use).
    pub p10_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The law's settings: `[governor]` and the budget in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub budget_ms: f64,
    pub headroom: f64,
    pub max_miss_rate: f64,
    pub down_after: Duration,
    pub up_after: Duration,
    pub cool_down: Duration,
    pub max_steps_per_minute: u32,
    /// Frames of the serving rung the window needs before anything is judged.
    pub min_frames: u32,
    /// The source's frame period, ms: a model slower than this queues frames.
    pub frame_period_ms: f64,
    /// A step down from a rung this soon after stepping up into it counts as a failed step up.
    pub probation: Duration,
}

impl Settings {
    /// The prediction a step up must meet.
    pub fn up_threshold_ms(&self) -> f64 {
        self.budget_ms * (1.0 - self.headroom)
    }
}

/// The longest the wait before a step up into a rung grows (x `up_after`).
pub const MAX_PENALTY: u32 = 64;

/// The law's memory between two decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The serving rung.
    pub current: usize,
    /// A rung held whatever the figures.
    pub pinned: Option<usize>,
    /// Since when the window has been over budget.
    over_since: Option<MonoTime>,
    /// Since when the next rung has been predicted to fit.
    fits_since: Option<MonoTime>,
    last_step: Option<MonoTime>,
    /// The last step up: into which rung, when.
    last_up: Option<(usize, MonoTime)>,
    /// When the steps of the last minute were taken.
    recent: VecDeque<MonoTime>,
    /// Per rung: `up_after` times this before a step up into it.
    penalty: Vec<u32>,
}

impl State {
    /// A ladder of `rungs` rungs serving `current`.
    pub fn new(rungs: usize, current: usize) -> State {
        State {
            current,
            pinned: None,
            over_since: None,
            fits_since: None,
            last_step: None,
            last_up: None,
            recent: VecDeque::new(),
            penalty: vec![1; rungs],
        }
    }

    /// After the ladder changed (a rung added or removed): `rungs` rungs, serving `current`,
    /// `pinned` renumbered by the caller. Pending periods and penalties start over (indices
    /// changed); the steps of the last minute still count.
    pub fn relabel(&mut self, rungs: usize, current: usize, pinned: Option<usize>) {
        self.current = current;
        self.pinned = pinned;
        self.over_since = None;
        self.fits_since = None;
        self.last_up = None;
        self.penalty = vec![1; rungs];
    }

    /// The swap the governor made happened (a step, or a move the law did not decide: the
    /// start, a pin).
    pub fn stepped(&mut self, to: usize, now: MonoTime) {
        if to > self.current {
            self.last_up = Some((to, now));
        }
        self.current = to;
        self.over_since = None;
        self.fits_since = None;
        self.last_step = Some(now);
        self.recent.push_back(now);
    }

    /// Steps taken in the minute before `now`.
    pub fn steps_last_minute(&self, now: MonoTime) -> usize {
        self.recent
            .iter()
            .filter(|t| now.saturating_since(**t) < MINUTE)
            .count()
    }

    /// The rungs of the ladder this state was made for.
    pub fn rungs(&self) -> usize {
        self.penalty.len()
    }

    /// The factor on `up_after` before a step up into `rung`.
    pub fn penalty(&self, rung: usize) -> u32 {
        self.penalty.get(rung).copied().unwrap_or(1)
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Up or down the ladder (up = a larger, slower model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Why the law steps, with the figures that decided it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// The window was over budget for `for_` (p99 or misses).
    OverBudget {
        p99_ms: f64,
        budget_ms: f64,
        misses: u32,
        frames: u32,
        for_: Duration,
        slowdown: f64,
        /// The target's predicted p99.
        predicted_ms: f64,
    },
    /// The next rung was predicted to fit with headroom for `for_` (`predicted_ms`: the
    /// target's prediction).
    Fits {
        predicted_ms: f64,
        threshold_ms: f64,
        slowdown: f64,
        p99_ms: f64,
        for_: Duration,
    },
    /// A pin.
    Pinned,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::OverBudget {
                p99_ms,
                budget_ms,
                misses,
                frames,
                for_,
                slowdown,
                predicted_ms,
            } => write!(
                f,
                "over budget for {:.1} s: window p99 {p99_ms:.2} ms vs budget {budget_ms:.2} ms, \
                 {misses} of {frames} frames late; slowdown {slowdown:.2}, target predicted \
                 {predicted_ms:.2} ms",
                for_.as_secs_f64()
            ),
            Reason::Fits {
                predicted_ms,
                threshold_ms,
                slowdown,
                p99_ms,
                for_,
            } => write!(
                f,
                "fits for {:.1} s: predicted p99 {predicted_ms:.2} ms <= \
                 {threshold_ms:.2} ms (budget less headroom); slowdown {slowdown:.2}, window p99 \
                 {p99_ms:.2} ms",
                for_.as_secs_f64()
            ),
            Reason::Pinned => f.write_str("pinned"),
        }
    }
}

/// A step the law decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    pub direction: Direction,
    pub reason: Reason,
}

/// The serving rung's slowdown against its measurement at load: window processing p50 over
/// measured p50 (1 when either is unknown).
pub fn slowdown(fig: &Figures, current: &Measured) -> f64 {
    if current.p50_ms > 0.0 && fig.proc_p50_ms > 0.0 {
        fig.proc_p50_ms / current.p50_ms
    } else {
        1.0
    }
}

/// Rung `rung`'s predicted end-to-end p99 under the window's conditions (see the module docs).
pub fn predict(s: &Settings, fig: &Figures, current: &Measured, rung: &Measured) -> f64 {
    let queue = |proc: f64| {
        if proc > s.frame_period_ms {
            s.frame_period_ms
        } else {
            0.0
        }
    };
    let base = (fig.p99_ms - fig.proc_p99_ms - queue(fig.proc_p99_ms)).max(0.0);
    let proc = if current.p10_ms > 0.0 {
        fig.proc_p99_ms * (rung.p10_ms / current.p10_ms)
    } else {
        rung.p99_ms
    };
    proc + base + queue(proc)
}

/// Where the governor starts: the largest rung whose measured median fits the budget with
/// headroom, else the smallest (the law then steps down or up from the live window's figures).
pub fn start_rung(s: &Settings, ladder: &[Measured]) -> usize {
    ladder
        .iter()
        .rposition(|m| m.p50_ms <= s.up_threshold_ms())
        .unwrap_or(0)
}

/// One decision. Returns the next state and the step to take, if any; the caller swaps, and
/// tells the state with [`State::stepped`] once the swap happened (a step that could not be made
/// is simply decided again later).
pub fn decide(
    s: &Settings,
    fig: &Figures,
    ladder: &[Measured],
    state: &State,
    now: MonoTime,
) -> (State, Option<Step>) {
    let mut st = state.clone();
    while st
        .recent
        .front()
        .is_some_and(|t| now.saturating_since(*t) >= MINUTE)
    {
        st.recent.pop_front();
    }
    if st.penalty.len() != ladder.len() {
        st.penalty.resize(ladder.len(), 1);
    }
    let n = ladder.len();
    let cur = st.current;
    if n == 0 || cur >= n {
        return (st, None);
    }
    if let Some(p) = st.pinned {
        st.over_since = None;
        st.fits_since = None;
        if p != cur && p < n {
            let direction = if p > cur {
                Direction::Up
            } else {
                Direction::Down
            };
            let step = Step {
                from: cur,
                to: p,
                direction,
                reason: Reason::Pinned,
            };
            return (st, Some(step));
        }
        return (st, None);
    }
    // A step up that survived its probation is no longer suspect.
    if let Some((r, t)) = st.last_up
        && now.saturating_since(t) >= s.probation
    {
        if r == cur {
            st.penalty[r] = 1;
        }
        st.last_up = None;
    }
    if fig.frames < s.min_frames.max(1) {
        return (st, None);
    }
    let over = fig.p99_ms > s.budget_ms || (fig.misses >= 2 && fig.miss_rate() > s.max_miss_rate);
    let measured = ladder[cur];
    let sd = slowdown(fig, &measured);
    if over {
        st.fits_since = None;
        let since = *st.over_since.get_or_insert(now);
        let lasted = now.saturating_since(since);
        if cur == 0 || lasted < s.down_after || fig.recent_misses == 0 {
            return (st, None);
        }
        let to = (0..cur)
            .rev()
            .find(|&r| predict(s, fig, &measured, &ladder[r]) <= s.up_threshold_ms())
            .unwrap_or(0);
        if let Some((r, t)) = st.last_up
            && r == cur
            && now.saturating_since(t) < s.probation
        {
            st.penalty[cur] = (st.penalty[cur] * 2).min(MAX_PENALTY);
            st.last_up = None;
        }
        let step = Step {
            from: cur,
            to,
            direction: Direction::Down,
            reason: Reason::OverBudget {
                p99_ms: fig.p99_ms,
                budget_ms: s.budget_ms,
                misses: fig.misses,
                frames: fig.frames,
                for_: lasted,
                slowdown: sd,
                predicted_ms: predict(s, fig, &measured, &ladder[to]),
            },
        };
        return (st, Some(step));
    }
    st.over_since = None;
    if cur + 1 >= n {
        st.fits_since = None;
        return (st, None);
    }
    let fits = |r: usize| predict(s, fig, &measured, &ladder[r]) <= s.up_threshold_ms();
    if !fits(cur + 1) {
        st.fits_since = None;
        return (st, None);
    }
    let since = *st.fits_since.get_or_insert(now);
    let lasted = now.saturating_since(since);
    // The largest rung predicted to fit whose own wait is over (a rung a step up failed into
    // waits longer; predictions grow with the rung, so the rungs below it fit too).
    let Some(to) = (cur + 1..n)
        .rev()
        .find(|&r| fits(r) && lasted >= s.up_after * st.penalty(r))
    else {
        return (st, None);
    };
    if st
        .last_step
        .is_some_and(|t| now.saturating_since(t) < s.cool_down)
    {
        return (st, None);
    }
    if st.recent.len() >= s.max_steps_per_minute as usize {
        return (st, None);
    }
    let step = Step {
        from: cur,
        to,
        direction: Direction::Up,
        reason: Reason::Fits {
            predicted_ms: predict(s, fig, &measured, &ladder[to]),
            threshold_ms: s.up_threshold_ms(),
            slowdown: sd,
            p99_ms: fig.p99_ms,
            for_: lasted,
        },
    };
    (st, Some(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            budget_ms: 16.67,
            headroom: 0.25,
            max_miss_rate: 0.01,
            down_after: Duration::from_millis(500),
            up_after: Duration::from_secs(2),
            cool_down: Duration::from_secs(3),
            max_steps_per_minute: 10,
            min_frames: 20,
            frame_period_ms: 16.67,
            probation: Duration::from_secs(10),
        }
    }

    /// MobileNetV2-like rungs: 1, 2, 4 and 8 ms measured.
    fn ladder() -> Vec<Measured> {
        [1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&p| Measured {
                p10_ms: p * 0.8,
                p50_ms: p * 0.9,
                p99_ms: p,
            })
            .collect()
    }

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_nanos(1_000_000_000_000 + ms * 1_000_000)
    }

    /// The window of rung `r` of `ladder()` under a slowdown `s`: 0.5 ms from capture to
    /// processing, plus a frame period of queueing when processing is longer than one.
    fn window(r: usize, s: f64) -> Figures {
        let proc = ladder()[r].p99_ms * s;
        let p99 = proc + 0.5 + if proc > 16.67 { 16.67 } else { 0.0 };
        let misses = if p99 > 16.67 { 100 } else { 0 };
        Figures {
            frames: 120,
            misses,
            recent_misses: misses / 8,
            p99_ms: p99,
            proc_p99_ms: proc,
            proc_p50_ms: ladder()[r].p50_ms * s,
        }
    }

    /// Runs the law every 100 ms from `from` to `to` ms with the rung's figures given by `fig`,
    /// applying each step at once; returns the steps.
    fn simulate(
        st: &mut State,
        from: u64,
        to: u64,
        fig: impl Fn(usize) -> Figures,
    ) -> Vec<(u64, Step)> {
        let s = settings();
        let l = ladder();
        let mut steps = Vec::new();
        let mut t = from;
        while t < to {
            let (next, step) = decide(&s, &fig(st.current), &l, st, at(t));
            *st = next;
            if let Some(step) = step {
                st.stepped(step.to, at(t));
                steps.push((t, step));
            }
            t += 100;
        }
        steps
    }

    #[test]
    fn starts_on_the_largest_rung_that_fits_with_headroom() {
        let s = settings();
        assert_eq!(start_rung(&s, &ladder()), 3);
        let slow: Vec<Measured> = ladder()
            .iter()
            .map(|m| Measured {
                p10_ms: m.p10_ms * 3.0,
                p50_ms: m.p50_ms * 3.0,
                p99_ms: m.p99_ms * 3.0,
            })
            .collect();
        assert_eq!(
            start_rung(&s, &slow),
            2,
            "a 10.8 ms median fits 12.5, 21.6 does not"
        );
        assert_eq!(
            start_rung(
                &s,
                &[Measured {
                    p10_ms: 30.0,
                    p50_ms: 40.0,
                    p99_ms: 50.0
                }]
            ),
            0
        );
    }

    #[test]
    fn a_sustained_overload_steps_down_to_the_largest_rung_predicted_to_fit() {
        let s = settings();
        let mut st = State::new(4, 3);
        // 8 ms x 2.5 = 20 ms + 0.5: over budget. 4 ms x 2.5 + 0.5 = 10.5 fits 12.5.
        let fig = window(3, 2.5);
        let (st1, step) = decide(&s, &fig, &ladder(), &st, at(0));
        assert_eq!(step, None, "not sustained yet");
        let (st2, step) = decide(&s, &fig, &ladder(), &st1, at(400));
        assert_eq!(step, None, "0.4 s < down_after");
        let (_, step) = decide(&s, &fig, &ladder(), &st2, at(500));
        let step = step.expect("a step after 0.5 s");
        assert_eq!(
            (step.from, step.to, step.direction),
            (3, 2, Direction::Down)
        );
        let Reason::OverBudget {
            slowdown,
            predicted_ms,
            ..
        } = step.reason
        else {
            panic!("{:?}", step.reason)
        };
        assert!((slowdown - 2.5).abs() < 1e-9);
        assert!((predicted_ms - 10.5).abs() < 1e-9);
        // A heavier load jumps further: x5 makes 4 ms 20.5, 2 ms 10.5.
        st.over_since = Some(at(0));
        let (_, step) = decide(&s, &window(3, 5.0), &ladder(), &st, at(600));
        assert_eq!(step.map(|s| s.to), Some(1));
        // Nothing fits: the lowest rung.
        let (_, step) = decide(&s, &window(3, 40.0), &ladder(), &st, at(600));
        assert_eq!(step.map(|s| s.to), Some(0));
    }

    #[test]
    fn a_short_spike_does_not_step_and_resets_the_period() {
        let s = settings();
        let st = State::new(4, 3);
        let (st, _) = decide(&s, &window(3, 2.5), &ladder(), &st, at(0));
        let (st, step) = decide(&s, &window(3, 1.0), &ladder(), &st, at(300));
        assert_eq!(step, None);
        let (_, step) = decide(&s, &window(3, 2.5), &ladder(), &st, at(600));
        assert_eq!(step, None, "the over-budget period started again at 0.6 s");
    }

    #[test]
    fn a_burst_the_window_remembers_is_not_an_overload() {
        let s = settings();
        // Five frames late together, half a second ago: the 2 s window is over budget (p99),
        // but nothing has been late since.
        let burst = Figures {
            frames: 120,
            misses: 5,
            recent_misses: 0,
            p99_ms: 40.0,
            proc_p99_ms: 35.0,
            proc_p50_ms: 7.2,
        };
        let mut st = State::new(4, 3);
        for t in (0..2000).step_by(100) {
            let (next, step) = decide(&s, &burst, &ladder(), &st, at(t));
            assert_eq!(step, None, "at {t} ms");
            st = next;
        }
        // Late again now: an overload that goes on, over budget since 0 s: the step.
        let again = Figures {
            recent_misses: 2,
            ..burst
        };
        let (_, step) = decide(&s, &again, &ladder(), &st, at(2000));
        assert_eq!(step.map(|s| s.direction), Some(Direction::Down));
    }

    #[test]
    fn misses_alone_count_as_over_budget() {
        let s = settings();
        let st = State::new(4, 3);
        let fig = Figures {
            frames: 100,
            misses: 3,
            recent_misses: 1,
            p99_ms: 15.0,
            proc_p99_ms: 9.0,
            proc_p50_ms: 7.2,
        };
        let (st, _) = decide(&s, &fig, &ladder(), &st, at(0));
        let (_, step) = decide(&s, &fig, &ladder(), &st, at(500));
        assert_eq!(step.map(|s| s.direction), Some(Direction::Down));
        // One late frame of a hundred is noise, not a trend.
        let one = Figures {
            misses: 1,
            recent_misses: 1,
            ..fig
        };
        let (st, _) = decide(&s, &one, &ladder(), &State::new(4, 3), at(0));
        let (_, step) = decide(&s, &one, &ladder(), &st, at(500));
        assert_eq!(step, None);
    }

    #[test]
    fn too_few_frames_judge_nothing() {
        let s = settings();
        let st = State::new(4, 3);
        let fig = Figures {
            frames: 5,
            ..window(3, 4.0)
        };
        let (st, _) = decide(&s, &fig, &ladder(), &st, at(0));
        let (_, step) = decide(&s, &fig, &ladder(), &st, at(5000));
        assert_eq!(step, None);
    }

    /// A window of about 5 ms whatever the rung (with `ladder()`'s doubling costs only the next
    /// rung fits: 2 x 5 + 0.5 <= 12.5 < 4 x 5 + 0.5).
    fn five_ms(_: usize) -> Figures {
        Figures {
            frames: 120,
            misses: 0,
            recent_misses: 0,
            p99_ms: 5.5,
            proc_p99_ms: 5.0,
            proc_p50_ms: 4.0,
        }
    }

    #[test]
    fn steps_up_after_a_sustained_fit_and_the_cool_down() {
        let mut st = State::new(4, 1);
        st.stepped(1, at(0));
        let steps = simulate(&mut st, 100, 2000, five_ms);
        assert!(steps.is_empty(), "up_after 2 s not over yet: {steps:?}");
        let steps = simulate(&mut st, 2000, 3200, five_ms);
        assert_eq!(steps.len(), 1, "{steps:?}");
        let (t, step) = steps[0];
        assert_eq!((step.from, step.to, step.direction), (1, 2, Direction::Up));
        assert_eq!(t, 3000, "held until the 3 s cool-down after the last step");
        assert!(matches!(step.reason, Reason::Fits { .. }));
    }

    #[test]
    fn a_step_up_goes_to_the_largest_rung_predicted_to_fit() {
        // At rung 0 at slowdown 1: 1 ms; rung 3 is predicted at 8.5 ms <= 12.5.
        let mut st = State::new(4, 0);
        let steps = simulate(&mut st, 0, 3000, |r| window(r, 1.0));
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!((steps[0].1.from, steps[0].1.to), (0, 3));
        let Reason::Fits { predicted_ms, .. } = steps[0].1.reason else {
            panic!("{:?}", steps[0].1.reason)
        };
        assert!((predicted_ms - 8.5).abs() < 1e-9, "the target's prediction");
        // At slowdown 1.6 rung 3 (12.8 ms + 0.5) is over 12.5: rung 2 it is.
        let mut st = State::new(4, 0);
        let steps = simulate(&mut st, 0, 3000, |r| window(r, 1.6));
        assert_eq!(steps.first().map(|s| s.1.to), Some(2), "{steps:?}");
    }

    #[test]
    fn the_top_rung_and_a_rung_that_does_not_fit_stay() {
        let s = settings();
        let mut st = State::new(4, 3);
        assert!(simulate(&mut st, 0, 20_000, |r| window(r, 1.0)).is_empty());
        // At rung 2 with slowdown 1.8: 8 x 1.8 + 0.5 = 14.9 > 12.5, and 4 x 1.8 + 0.5 = 7.7 is
        // within budget: neither step.
        let (_, step) = decide(&s, &window(2, 1.8), &ladder(), &State::new(4, 2), at(0));
        assert_eq!(step, None);
    }

    #[test]
    fn constant_latency_never_oscillates() {
        for slowdown in [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 20.0] {
            let mut st = State::new(4, 3);
            let steps = simulate(&mut st, 0, 600_000, |r| window(r, slowdown));
            assert!(
                steps.len() <= 3,
                "slowdown {slowdown}: {} steps: {steps:?}",
                steps.len()
            );
            let dirs: Vec<Direction> = steps.iter().map(|(_, s)| s.direction).collect();
            assert!(
                dirs.windows(2).all(|w| w[0] == w[1]),
                "slowdown {slowdown}: direction changed: {steps:?}"
            );
            if let Some((t, _)) = steps.last() {
                assert!(*t < 20_000, "slowdown {slowdown}: still stepping at {t} ms");
            }
        }
    }

    #[test]
    fn a_wrong_prediction_backs_off_instead_of_oscillating() {
        // The measurements of rung 3 are optimistic: it really takes 3x what was measured, so
        // every step up into it fails. The wait before the next try doubles each time.
        let real = |r: usize| {
            if r == 3 {
                window(3, 3.0)
            } else {
                window(r, 1.0)
            }
        };
        let mut st = State::new(4, 2);
        let steps = simulate(&mut st, 0, 600_000, real);
        let ups = steps
            .iter()
            .filter(|(_, s)| s.direction == Direction::Up)
            .count();
        assert!(ups >= 2, "it keeps trying, slower and slower: {steps:?}");
        assert!(
            ups <= 10,
            "bounded: {ups} steps up in ten minutes: {steps:?}"
        );
        let gaps: Vec<u64> = steps
            .iter()
            .filter(|(_, s)| s.direction == Direction::Up)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]) && gaps[3] > 4 * gaps[0],
            "the waits grow: {gaps:?}"
        );
    }

    #[test]
    fn the_ceiling_holds_steps_up_for_the_rest_of_the_minute() {
        let mut s = settings();
        s.max_steps_per_minute = 2;
        s.cool_down = Duration::from_millis(100);
        s.up_after = Duration::from_millis(100);
        let mut st = State::new(4, 0);
        let l = ladder();
        let mut t = 0;
        let mut ups = Vec::new();
        while t < 70_000 {
            let (next, step) = decide(&s, &five_ms(st.current), &l, &st, at(t));
            st = next;
            if let Some(step) = step {
                st.stepped(step.to, at(t));
                ups.push(t);
            }
            t += 100;
        }
        assert_eq!(ups.len(), 3, "{ups:?}");
        assert!(ups[1] < 1000, "two quick steps: {ups:?}");
        assert!(
            ups[2] >= 60_000 + ups[0],
            "the third waits for the minute: {ups:?}"
        );
    }

    #[test]
    fn a_pin_is_stepped_to_and_held_whatever_the_figures() {
        let s = settings();
        let mut st = State::new(4, 1);
        st.pinned = Some(3);
        let (next, step) = decide(&s, &window(1, 1.0), &ladder(), &st, at(0));
        let step = step.expect("to the pin");
        assert_eq!(
            (step.to, step.direction, step.reason),
            (3, Direction::Up, Reason::Pinned)
        );
        st = next;
        st.stepped(3, at(0));
        // Far over budget for a minute: held.
        assert!(simulate(&mut st, 100, 60_000, |r| window(r, 5.0)).is_empty());
        assert_eq!(st.current, 3);
        st.pinned = None;
        let steps = simulate(&mut st, 60_000, 61_000, |r| window(r, 5.0));
        assert_eq!(steps.len(), 1, "unpinned, it steps down: {steps:?}");
        assert_eq!(steps[0].1.direction, Direction::Down);
    }

    #[test]
    fn relabel_keeps_the_last_minute_and_forgets_the_rest() {
        let mut st = State::new(4, 3);
        st.stepped(2, at(0));
        st.penalty[3] = 4;
        st.relabel(5, 3, None);
        assert_eq!(st.steps_last_minute(at(1000)), 1);
        assert_eq!(st.penalty(3), 1);
        assert_eq!(st.penalty.len(), 5);
    }
}
