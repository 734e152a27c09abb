//! Small statistics for comparing strategies: mean, standard deviation, Welch's t-test.

/// Arithmetic mean (NaN for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n - 1 in the denominator; 0 for fewer than two values).
pub fn std_dev(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Result of Welch's unequal-variance t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// The t statistic of mean(a) - mean(b).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// One-sided p-value of the alternative mean(a) > mean(b).
    pub p_greater: f64,
}

/// Welch's t-test of `a` against `b` (one-sided alternative: `a` has the larger mean).
pub fn welch(a: &[f64], b: &[f64]) -> Welch {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (std_dev(a).powi(2) / na, std_dev(b).powi(2) / nb);
    let se = (va + vb).sqrt();
    let diff = mean(a) - mean(b);
    if se == 0.0 {
        let p = if diff > 0.0 {
            0.0
        } else if diff < 0.0 {
            1.0
        } else {
            0.5
        };
        return Welch {
            t: diff.signum() * f64::INFINITY,
            df: na + nb - 2.0,
            p_greater: p,
        };
    }
    let t = diff / se;
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Welch {
        t,
        df,
        p_greater: student_t_sf(t, df),
    }
}

/// Upper tail P(T > t) of Student's t distribution with `df` degrees of freedom.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * reg_inc_beta(df / 2.0, 0.5, x);
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, 9 terms).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz).
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // Use the symmetry relation where the continued fraction converges fast.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - reg_inc_beta(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        // Even step.
        let num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 + num * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        f *= d * c;
        // Odd step.
        let num = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + num * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = d * c;
        f *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * f / a
}

/// Spearman's rank correlation of the pairs whose values are both not NaN (average ranks for
/// ties), with the number of pairs used; NaN with fewer than 2 pairs or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> (f64, usize) {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| (*a, *b))
        .collect();
    let n = pairs.len();
    if n < 2 {
        return (f64::NAN, n);
    }
    let rx = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    (pearson(&rx, &ry), n)
}

/// Ranks starting at 1, ties sharing their average rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Kendall's rank correlation tau-b of the pairs whose values are both not NaN (ties on either
/// side counted as in tau-b), with the number of pairs used; NaN with fewer than 2 pairs or a
/// constant side. O(n^2): meant for at most a few thousand pairs.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> (f64, usize) {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| (*a, *b))
        .collect();
    let n = pairs.len();
    if n < 2 {
        return (f64::NAN, n);
    }
    let (mut concordant, mut discordant, mut tie_x, mut tie_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = pairs[i].0.total_cmp(&pairs[j].0) as i64;
            let dy = pairs[i].1.total_cmp(&pairs[j].1) as i64;
            match (dx, dy) {
                (0, 0) => {}
                (0, _) => tie_x += 1,
                (_, 0) => tie_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    // Pairs not tied in x (tied in y only count), pairs not tied in y.
    let untied_x = (concordant + discordant + tie_y) as f64;
    let untied_y = (concordant + discordant + tie_x) as f64;
    (
        (concordant - discordant) as f64 / (untied_x * untied_y).sqrt(),
        n,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_tau_by_hand() {
        // Five concordant pairs, one discordant: (5 - 1) / 6.
        let (tau, n) = kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
        assert_eq!(n, 4);
        assert!((tau - 4.0 / 6.0).abs() < 1e-12, "{tau}");
        // One tie in x: tau-b = 5 / sqrt(5 * 6) (scipy.stats.kendalltau: 0.9128709).
        let (tau, _) = kendall_tau(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((tau - 5.0 / 30f64.sqrt()).abs() < 1e-12, "{tau}");
        assert!((kendall_tau(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]).0 + 1.0).abs() < 1e-12);
        let (tau, n) = kendall_tau(&[1.0, f64::NAN, 2.0], &[5.0, 1.0, 6.0]);
        assert_eq!((tau, n), (1.0, 2));
        assert!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]).0.is_nan());
    }

    #[test]
    fn gamma_and_beta_match_closed_forms() {
        // Γ(5) = 24, Γ(0.5) = sqrt(pi).
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // I_x(1, 1) = x; I_x(2, 1) = x^2; I_x(a, b) = 1 - I_{1-x}(b, a).
        assert!((reg_inc_beta(1.0, 1.0, 0.3) - 0.3).abs() < 1e-12);
        assert!((reg_inc_beta(2.0, 1.0, 0.3) - 0.09).abs() < 1e-12);
        let (a, b, x) = (3.5, 0.5, 0.8);
        assert!((reg_inc_beta(a, b, x) + reg_inc_beta(b, a, 1.0 - x) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn student_t_tails_match_tables() {
        // Closed form for df = 1 (Cauchy): P(T > t) = 1/2 - atan(t)/pi.
        for t in [-2.0, 0.0, 0.5, 3.0] {
            let want = 0.5 - f64::atan(t) / std::f64::consts::PI;
            assert!((student_t_sf(t, 1.0) - want).abs() < 1e-12, "t = {t}");
        }
        // Critical values from t tables: t_{0.01, 10} = 2.764, t_{0.05, 30} = 1.697.
        assert!((student_t_sf(2.764, 10.0) - 0.01).abs() < 2e-4);
        assert!((student_t_sf(1.697, 30.0) - 0.05).abs() < 2e-4);
        // Large df approaches the normal: P(Z > 2.326) = 0.01.
        assert!((student_t_sf(2.326, 1e6) - 0.01).abs() < 1e-4);
    }

    #[test]
    fn welch_detects_shifts_and_not_equal_samples() {
        let a: Vec<f64> = (0..50).map(|i| (i % 7) as f64 + 1.0).collect();
        let b: Vec<f64> = (0..50).map(|i| (i % 7) as f64).collect();
        let w = welch(&a, &b);
        assert!(w.p_greater < 0.01 && w.t > 0.0);
        assert!(welch(&b, &a).p_greater > 0.99);
        assert!((welch(&a, &a).p_greater - 0.5).abs() < 1e-9);
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]) - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
