//! The statistics of one cell: mean, median, standard deviation and the 95% confidence
//! interval of the mean (Student's t), and Welch's interval for a difference of means.

pub use renkei_protocol::evaluation::Summary;
use renkei_protocol::evaluation::{round4 as round, t975};

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn variance(values: &[f64], m: f64) -> f64 {
    values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() as f64 - 1.0)
}

/// The summary of `values`; `None` for fewer than two (no interval).
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values);
    let sd = variance(values, m).sqrt();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted.get(mid).copied()?
    } else {
        (sorted.get(mid - 1).copied()? + sorted.get(mid).copied()?) / 2.0
    };
    let half = t975(values.len() as f64 - 1.0) * sd / (values.len() as f64).sqrt();
    if !(m.is_finite() && sd.is_finite() && half.is_finite()) {
        return None;
    }
    Some(Summary {
        mean: round(m),
        median: Some(round(median)),
        sd: round(sd),
        ci95: [round(m - half), round(m + half)],
    })
}

/// Mean of `a` minus mean of `b`, with Welch's 95% interval.
pub fn welch(a: &[f64], b: &[f64]) -> Option<(f64, [f64; 2])> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, mb) = (mean(a), mean(b));
    let (va, vb) = (
        variance(a, ma) / a.len() as f64,
        variance(b, mb) / b.len() as f64,
    );
    let se = (va + vb).sqrt();
    let d = ma - mb;
    if se == 0.0 {
        return Some((round(d), [round(d), round(d)]));
    }
    let df = (va + vb).powi(2)
        / (va.powi(2) / (a.len() as f64 - 1.0) + vb.powi(2) / (b.len() as f64 - 1.0));
    let half = t975(df) * se;
    half.is_finite()
        .then(|| (round(d), [round(d - half), round(d + half)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!((s.mean, s.median), (5.0, Some(4.5)));
        assert_eq!(s.sd, 2.1381);
        // t(7) = 2.365: 5 ± 2.365 × 2.1381 / √8.
        assert_eq!(s.ci95, [3.2122, 6.7878]);
        assert!(summarize(&[1.0]).is_none());
        let (d, ci) = welch(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(d, 0.0);
        assert!(ci[0] < 0.0 && ci[1] > 0.0);
    }
}
