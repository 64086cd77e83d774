//! The one-cycle learning-rate (and momentum) schedule, with the exact semantics of PyTorch's
//! `torch.optim.lr_scheduler.OneCycleLR` (two phases, cosine annealing), which both reference
//! scripts step once per batch.

/// PyTorch's `OneCycleLR` with `anneal_strategy = "cos"` and `three_phase = False`.
///
/// Phase 1 runs from step 0 to `pct_start · total_steps − 1` (a float, as in PyTorch), taking
/// the learning rate from `max_lr / div_factor` up to `max_lr` and the momentum from
/// `max_momentum` down to `base_momentum`; phase 2 runs to step `total_steps − 1`, taking the
/// learning rate down to `max_lr / div_factor / final_div_factor` and the momentum back up.
/// With Adam, PyTorch's momentum is `beta1` (its default `cycle_momentum = True`).
///
/// One deliberate difference: where PyTorch divides by a zero-length phase (e.g. 10 steps with
/// `pct_start = 0.1`, whose phase 1 ends at step 0 = its start) and raises
/// `ZeroDivisionError`, this schedule takes that step at the end of the phase (`max_lr`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// Number of optimiser steps the schedule spans.
    pub total_steps: usize,
    /// Peak learning rate.
    pub max_lr: f64,
    /// Fraction of the steps spent increasing the learning rate.
    pub pct_start: f64,
    /// `initial_lr = max_lr / div_factor`.
    pub div_factor: f64,
    /// `min_lr = initial_lr / final_div_factor`.
    pub final_div_factor: f64,
    /// Whether the momentum (Adam's `beta1`) cycles inversely to the learning rate.
    pub cycle_momentum: bool,
    /// Momentum at the learning-rate peak.
    pub base_momentum: f64,
    /// Momentum at the start and the end.
    pub max_momentum: f64,
}

/// One point of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// Adam's `beta1` of this step (`None` when the momentum does not cycle).
    pub beta1: Option<f64>,
}

/// PyTorch's `_annealing_cos`, operation for operation (so the values agree to the last bit
/// wherever `cos` is the same libm function).
fn anneal_cos(start: f64, end: f64, pct: f64) -> f64 {
    let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
    end + (start - end) / 2.0 * cos_out
}

impl OneCycle {
    /// The schedule of the reference code: `pct_start` 0.1, `div_factor` 25, `final_div_factor`
    /// 1e4, momentum cycling between 0.85 and 0.95 (PyTorch's defaults).
    pub fn reference(total_steps: usize, max_lr: f64) -> Self {
        Self {
            total_steps,
            max_lr,
            pct_start: 0.1,
            div_factor: 25.0,
            final_div_factor: 1e4,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }

    /// Checks the settings PyTorch checks (`total_steps > 0`, `0 ≤ pct_start ≤ 1`) plus finite,
    /// positive factors.
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.total_steps == 0 {
            return Err("the schedule needs at least one step".into());
        }
        if !(0.0..=1.0).contains(&self.pct_start) {
            return Err(format!("pct_start must lie in [0, 1], got {}", self.pct_start));
        }
        for (name, v) in [
            ("max_lr", self.max_lr),
            ("div_factor", self.div_factor),
            ("final_div_factor", self.final_div_factor),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be finite and positive, got {v}"));
            }
        }
        for (name, v) in [
            ("base_momentum", self.base_momentum),
            ("max_momentum", self.max_momentum),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{name} must lie in [0, 1), got {v}"));
            }
        }
        Ok(())
    }

    /// The learning rate and `beta1` of step `step` (0-based: the values the optimiser uses for
    /// its `step + 1`-th update). Steps past the end repeat the last one.
    pub fn at(&self, step: usize) -> ScheduleStep {
        let step_num = step.min(self.total_steps.saturating_sub(1)) as f64;
        let initial_lr = self.max_lr / self.div_factor;
        let min_lr = initial_lr / self.final_div_factor;
        // (end_step, start_lr, end_lr, start_momentum, end_momentum), as PyTorch builds them.
        let phases = [
            (
                self.pct_start * self.total_steps as f64 - 1.0,
                initial_lr,
                self.max_lr,
                self.max_momentum,
                self.base_momentum,
            ),
            (
                (self.total_steps - 1) as f64,
                self.max_lr,
                min_lr,
                self.base_momentum,
                self.max_momentum,
            ),
        ];
        let mut start_step = 0.0;
        for (i, &(end_step, start_lr, end_lr, start_m, end_m)) in phases.iter().enumerate() {
            if step_num <= end_step || i == phases.len() - 1 {
                let span = end_step - start_step;
                // A zero-length phase (PyTorch: ZeroDivisionError) is at its end.
                let pct = if span == 0.0 {
                    1.0
                } else {
                    (step_num - start_step) / span
                };
                return ScheduleStep {
                    lr: anneal_cos(start_lr, end_lr, pct),
                    beta1: self.cycle_momentum.then(|| anneal_cos(start_m, end_m, pct)),
                };
            }
            start_step = end_step;
        }
        // Unreachable: the last phase always matches. Kept total for the type checker.
        ScheduleStep {
            lr: min_lr,
            beta1: self.cycle_momentum.then_some(self.max_momentum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_at_the_end_of_warm_up_and_ends_at_min_lr() {
        let s = OneCycle::reference(100, 1e-3);
        assert!((s.at(0).lr - 1e-3 / 25.0).abs() < 1e-18);
        assert!((s.at(9).lr - 1e-3).abs() < 1e-18);
        assert_eq!(s.at(9).beta1, Some(0.85));
        assert!((s.at(99).lr - 1e-3 / 25.0 / 1e4).abs() < 1e-18);
        assert_eq!(s.at(99).beta1, Some(0.95));
    }

    #[test]
    fn zero_length_warm_up_takes_the_peak() {
        // 10 steps × 0.1: phase 1 is the single step 0 (PyTorch divides by zero here).
        let s = OneCycle::reference(10, 1e-3);
        assert_eq!(s.at(0).lr, 1e-3);
        assert!(s.at(1).lr < 1e-3);
    }
}
