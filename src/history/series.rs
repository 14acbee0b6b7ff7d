//! The samples of one series, kept as runs of equal samples: a cluster whose figures do not
//! change (most of them, most of the time) adds 2 bytes per sample, the milliseconds since the
//! sample before, instead of a whole [`Point`] (about 190 bytes with its state). Times stay exact.

use std::collections::VecDeque;

use super::{Point, UnixMillis};

/// Consecutive samples with the same figures: `value` is the first (its `t` that sample's time),
/// each next one `gaps[i]` milliseconds after the one before.
#[derive(Clone, Debug)]
struct Run {
    value: Point,
    gaps: VecDeque<u16>,
    /// The time of the last sample.
    last: UnixMillis,
}

/// The samples of one series, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Series {
    runs: VecDeque<Run>,
    len: usize,
}

/// Whether two samples have the same figures (their times aside).
fn same_figures(a: &Point, b: &Point) -> bool {
    a.score == b.score
        && a.state == b.state
        && a.repo == b.repo
        && a.rate_in == b.rate_in
        && a.rate_out == b.rate_out
        && a.pins == b.pins
}

impl Series {
    /// Appends a sample (not older than the last one). A sample more than 65 s after the one
    /// before starts a run of its own.
    pub fn push(&mut self, point: Point) {
        self.len += 1;
        if let Some(run) = self.runs.back_mut()
            && same_figures(&run.value, &point)
            && let Ok(gap) = u16::try_from(point.t - run.last)
        {
            run.gaps.push_back(gap);
            run.last = point.t;
            return;
        }
        self.runs.push_back(Run {
            last: point.t,
            value: point,
            gaps: VecDeque::new(),
        });
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The time of the oldest sample.
    pub fn first_time(&self) -> Option<UnixMillis> {
        self.runs.front().map(|run| run.value.t)
    }

    /// Drops the oldest sample; returns its time.
    pub fn pop_front(&mut self) -> Option<UnixMillis> {
        let run = self.runs.front_mut()?;
        let t = run.value.t;
        match run.gaps.pop_front() {
            Some(gap) => run.value.t += UnixMillis::from(gap),
            None => {
                self.runs.pop_front();
            }
        }
        self.len -= 1;
        Some(t)
    }

    /// The times of every sample, oldest first.
    pub fn times(&self) -> impl Iterator<Item = UnixMillis> + '_ {
        self.runs.iter().flat_map(|run| {
            std::iter::once(run.value.t).chain(run.gaps.iter().scan(run.value.t, |t, gap| {
                *t += UnixMillis::from(*gap);
                Some(*t)
            }))
        })
    }

    /// The samples from time `since` on (all of them without), oldest first.
    pub fn points(&self, since: Option<UnixMillis>) -> VecDeque<Point> {
        let since = since.unwrap_or(UnixMillis::MIN);
        let mut out = VecDeque::new();
        for run in self.runs.iter().filter(|run| run.last >= since) {
            let mut t = run.value.t;
            let gaps = std::iter::once(0).chain(run.gaps.iter().copied());
            for gap in gaps {
                t += UnixMillis::from(gap);
                if t >= since {
                    out.push_back(Point {
                        t,
                        ..run.value.clone()
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: UnixMillis, score: i32) -> Point {
        Point {
            t,
            score: Some(score),
            state: "Healthy".into(),
            ..Point::default()
        }
    }

    #[test]
    fn equal_samples_share_a_run_and_keep_their_times() {
        let mut s = Series::default();
        for (t, score) in [
            (1_000, 100),
            (11_003, 100),
            (20_998, 100),
            (31_000, 60),
            (41_000, 100),
        ] {
            s.push(point(t, score));
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.runs.len(), 3, "100 x3, 60, 100");
        let back: Vec<(UnixMillis, Option<i32>)> =
            s.points(None).iter().map(|p| (p.t, p.score)).collect();
        assert_eq!(
            back,
            [
                (1_000, Some(100)),
                (11_003, Some(100)),
                (20_998, Some(100)),
                (31_000, Some(60)),
                (41_000, Some(100))
            ]
        );
        let since: Vec<UnixMillis> = s.points(Some(20_998)).iter().map(|p| p.t).collect();
        assert_eq!(since, [20_998, 31_000, 41_000]);
        assert_eq!(
            s.times().collect::<Vec<_>>(),
            [1_000, 11_003, 20_998, 31_000, 41_000]
        );
        // A sample more than 65 s after the one before starts a run of its own.
        s.push(point(200_000, 100));
        assert_eq!(s.runs.len(), 4);
        assert_eq!(s.times().last(), Some(200_000));
        assert_eq!(s.points(Some(41_001)).len(), 1);
    }

    #[test]
    fn the_oldest_samples_go_first_across_runs() {
        let mut s = Series::default();
        for (t, score) in [(0, 1), (10, 1), (20, 2), (30, 3)] {
            s.push(point(t, score));
        }
        assert_eq!(s.first_time(), Some(0));
        assert_eq!(s.pop_front(), Some(0));
        assert_eq!(s.first_time(), Some(10));
        assert_eq!(s.pop_front(), Some(10));
        assert_eq!(
            s.runs.len(),
            2,
            "the first run is gone with its last sample"
        );
        assert_eq!(s.pop_front(), Some(20));
        assert_eq!(s.pop_front(), Some(30));
        assert!(s.is_empty());
        assert_eq!(s.pop_front(), None);
        assert_eq!(s.first_time(), None);
    }
}
