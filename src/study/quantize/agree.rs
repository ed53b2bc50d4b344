//! How closely the int8 model follows the float one on the same inputs. Pearson correlation is
//! the gate (it subtracts the mean, so logits sharing a large offset cannot hide a broken
//! quantizer as raw cosine would); relative L2 error and top-1 agreement are reported.

/// Agreement of int8 logits with float logits over a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Agreement {
    pub samples: usize,
    /// Pearson correlation of all logits pooled.
    pub pearson: f64,
    /// `||q - f|| / ||f||` over all logits pooled.
    pub rel_l2: f64,
    /// Fraction of samples whose arg-max class matches.
    pub top1: f64,
}

/// Accumulates logit pairs sample by sample (no storage).
#[derive(Debug, Default)]
pub struct AgreementAcc {
    n: f64,
    sf: f64,
    sq: f64,
    sff: f64,
    sqq: f64,
    sfq: f64,
    err: f64,
    samples: usize,
    same_top1: usize,
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

impl AgreementAcc {
    /// Adds one sample's float and int8 logits.
    pub fn add(&mut self, float: &[f32], int8: &[f32]) {
        for (&f, &q) in float.iter().zip(int8) {
            let (f, q) = (f64::from(f), f64::from(q));
            self.n += 1.0;
            self.sf += f;
            self.sq += q;
            self.sff += f * f;
            self.sqq += q * q;
            self.sfq += f * q;
            self.err += (q - f) * (q - f);
        }
        self.samples += 1;
        if argmax(float) == argmax(int8) {
            self.same_top1 += 1;
        }
    }

    pub fn finish(&self) -> Agreement {
        let n = self.n.max(1.0);
        let cov = self.sfq / n - self.sf / n * self.sq / n;
        let vf = self.sff / n - (self.sf / n).powi(2);
        let vq = self.sqq / n - (self.sq / n).powi(2);
        let pearson = if vf > 0.0 && vq > 0.0 {
            cov / (vf * vq).sqrt()
        } else {
            0.0
        };
        Agreement {
            samples: self.samples,
            pearson,
            rel_l2: (self.err / self.sff.max(f64::MIN_POSITIVE)).sqrt(),
            top1: self.same_top1 as f64 / self.samples.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_does_not_fake_agreement() {
        // int8 logits = a constant offset + noise uncorrelated with the float ones: cosine
        // would be ~1, Pearson must be ~0.
        let mut acc = AgreementAcc::default();
        acc.add(&[100.0, 101.0, 100.0, 101.0], &[100.0, 100.0, 101.0, 101.0]);
        let a = acc.finish();
        assert!(a.pearson.abs() < 1e-9, "pearson {}", a.pearson);
    }

    #[test]
    fn identical_logits_agree_fully() {
        let mut acc = AgreementAcc::default();
        acc.add(&[1.0, 3.0, 2.0], &[1.0, 3.0, 2.0]);
        let a = acc.finish();
        assert!((a.pearson - 1.0).abs() < 1e-12);
        assert_eq!(a.rel_l2, 0.0);
        assert_eq!(a.top1, 1.0);
    }
}
