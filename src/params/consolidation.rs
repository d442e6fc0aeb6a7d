//! [`Consolidation`]: the quadratic penalties that the regularisation baselines of continual
//! learning put on a plain model's weights after each task, and the running sums they are
//! built from. It lives in the [`super::ParamStore`] next to the weights it protects, so both
//! training backends apply it in the same place: between the gradient of the task loss and
//! the optimizer's update, with the same code ([`Consolidation::before_update`] and
//! [`Consolidation::after_update`]).
//!
//! Every penalty is a sum of terms `Σ_i Ω_i (θ_i − θ*_i)²` (an importance `Ω` and an anchor
//! `θ*` per weight), times a strength; its gradient `2 · strength · Ω_i (θ_i − θ*_i)` is
//! added to the task loss's gradient before the update. The reported training loss stays the
//! task loss alone.
//!
//! - **EWC** (Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks",
//!   PNAS 2017): after task `k`, a term with `Ω = F_k` (the diagonal Fisher of task `k`,
//!   estimated by the learner) and `θ* = θ` at the end of task `k`; one term per finished
//!   task, strength `λ/2`.
//! - **Online EWC** (Schwarz et al., "Progress & Compress", ICML 2018): one term, its
//!   importance the running Fisher `F ← γF + F_k` and its anchor the latest `θ*`; as in their
//!   paper and van de Ven & Tolias's reference code, the penalty weighs the running Fisher
//!   by `γ` once more: strength `λγ/2`.
//! - **SI** (Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML
//!   2017): during a task, `ω_i += −g_i Δθ_i` at every step, `g` the gradient of the task
//!   loss (without the penalty, as in the paper) and `Δθ` the step's update; at the task's
//!   end `Ω_i += ω_i / ((θ_i − θ_i^start)² + ξ)`, `ω` reset, the anchor moved to `θ`;
//!   strength `c`.

/// Which of the penalties a [`Consolidation`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// One Fisher term per finished task (`ewc`).
    Ewc,
    /// One running Fisher term (`online-ewc`).
    OnlineEwc,
    /// Synaptic Intelligence's path-integral term (`si`).
    Si,
}

/// One quadratic term `Σ_i Ω_i (θ_i − θ*_i)²`, per parameter in the network's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor<T> {
    /// `Ω` (a Fisher, or SI's importance).
    pub importance: Vec<Vec<T>>,
    /// `θ*`: the weights at the end of the task the term protects.
    pub anchor: Vec<Vec<T>>,
}

/// SI's running sums over the task being trained.
#[derive(Debug, Clone, PartialEq)]
pub struct PathIntegral<T> {
    /// `ω`: `Σ −g Δθ` over the steps of the current task.
    pub omega: Vec<Vec<T>>,
    /// `θ` at the start of the current task.
    pub start: Vec<Vec<T>>,
    /// The task loss's gradient of the step in progress (between the two update calls).
    grad: Vec<Vec<T>>,
    /// The weights before the step in progress's update.
    before: Vec<Vec<T>>,
}

/// A plain model's penalty against forgetting: its terms and SI's running sums, with the
/// settings that turn them into a gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Consolidation<T> {
    /// Which penalty.
    pub penalty: Penalty,
    /// The penalty's strength: the gradient added is `2 · strength · Σ_terms Ω (θ − θ*)`.
    pub strength: f64,
    /// Online EWC's decay `γ` of the running Fisher.
    pub gamma: f64,
    /// SI's damping `ξ`.
    pub xi: f64,
    /// The quadratic terms (none until the first task ends).
    pub terms: Vec<Anchor<T>>,
    /// SI's running sums (SI only).
    pub path: Option<PathIntegral<T>>,
}

impl<T: candle_core::WithDType> Consolidation<T> {
    /// A penalty with no term yet for a model whose weights start at `weights`: `strength`
    /// as [`Consolidation::strength`] says (λ/2, λγ/2 or c).
    pub fn new(penalty: Penalty, strength: f64, gamma: f64, xi: f64, weights: &[Vec<T>]) -> Self {
        let zeros = || -> Vec<Vec<T>> {
            weights
                .iter()
                .map(|w| vec![T::from_f64(0.0); w.len()])
                .collect()
        };
        let path = (penalty == Penalty::Si).then(|| PathIntegral {
            omega: zeros(),
            start: weights.to_vec(),
            grad: zeros(),
            before: zeros(),
        });
        Consolidation {
            penalty,
            strength,
            gamma,
            xi,
            terms: Vec::new(),
            path,
        }
    }

    /// Before parameter `p`'s update: keeps SI's gradient and weights, then adds the
    /// penalty's gradient to the task loss's gradient `g` (at the weights `w` before the
    /// update).
    pub fn before_update(&mut self, p: usize, w: &[T], g: &mut [T]) {
        if let Some(path) = &mut self.path {
            path.grad[p].copy_from_slice(g);
            path.before[p].copy_from_slice(w);
        }
        let k = T::from_f64(2.0 * self.strength);
        for term in &self.terms {
            let (imp, anchor) = (&term.importance[p], &term.anchor[p]);
            for (((g, &w), &f), &a) in g.iter_mut().zip(w).zip(imp).zip(anchor) {
                *g += k * f * (w - a);
            }
        }
    }

    /// After parameter `p`'s update to `w`: SI's `ω += −g Δθ`.
    pub fn after_update(&mut self, p: usize, w: &[T]) {
        if let Some(path) = &mut self.path {
            let (omega, g, before) = (&mut path.omega[p], &path.grad[p], &path.before[p]);
            for (((o, &g), &b), &w) in omega.iter_mut().zip(g).zip(before).zip(w) {
                *o -= g * (w - b);
            }
        }
    }

    /// The end of a task with the model at `weights` and, for EWC, that task's diagonal
    /// Fisher `fisher`: adds (EWC) or folds in (online EWC, SI) the task's term.
    pub fn end_task(&mut self, weights: &[Vec<T>], fisher: Option<Vec<Vec<T>>>) {
        match (self.penalty, fisher) {
            (Penalty::Ewc, Some(f)) => self.terms.push(Anchor {
                importance: f,
                anchor: weights.to_vec(),
            }),
            (Penalty::OnlineEwc, Some(mut f)) => {
                if let Some(old) = self.terms.first() {
                    let gamma = T::from_f64(self.gamma);
                    for (f, old) in f.iter_mut().zip(&old.importance) {
                        for (f, &o) in f.iter_mut().zip(old) {
                            *f += gamma * o;
                        }
                    }
                }
                self.terms = vec![Anchor {
                    importance: f,
                    anchor: weights.to_vec(),
                }];
            }
            (Penalty::Si, _) => {
                let Some(path) = &mut self.path else { return };
                let mut importance = match self.terms.pop() {
                    Some(t) => t.importance,
                    None => weights
                        .iter()
                        .map(|w| vec![T::from_f64(0.0); w.len()])
                        .collect(),
                };
                let xi = T::from_f64(self.xi);
                for (p, w) in weights.iter().enumerate() {
                    let (omega, start) = (&mut path.omega[p], &mut path.start[p]);
                    for (((big, o), s), &w) in importance[p].iter_mut().zip(omega).zip(start).zip(w)
                    {
                        let d = w - *s;
                        *big += *o / (d * d + xi);
                        *o = T::from_f64(0.0);
                        *s = w;
                    }
                }
                self.terms = vec![Anchor {
                    importance,
                    anchor: weights.to_vec(),
                }];
            }
            // EWC without a Fisher: nothing to add (the learner always passes one).
            (Penalty::Ewc | Penalty::OnlineEwc, None) => {}
        }
    }

    /// The penalty's value at `weights` (for tests and diagnostics; training adds only its
    /// gradient).
    pub fn value(&self, weights: &[Vec<T>]) -> f64 {
        let mut sum = 0.0;
        for term in &self.terms {
            for ((w, imp), anchor) in weights.iter().zip(&term.importance).zip(&term.anchor) {
                for ((&w, &f), &a) in w.iter().zip(imp).zip(anchor) {
                    let d = (w - a).to_f64();
                    sum += f.to_f64() * d * d;
                }
            }
        }
        self.strength * sum
    }
}
