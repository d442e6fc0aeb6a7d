//! Why a model file's layers do not fit together (`crate::model::ModelSpec::shapes`). Each variant names the layer (`layer 2
//! (conv2d)`) and says what would be valid.

/// A model whose layers do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The input shape is empty or has a zero.
    #[error("`input` must be non-empty with positive sizes, got {0:?}")]
    Input(Vec<usize>),
    /// No layers at all.
    #[error("a model needs at least one [[layer]]")]
    NoLayers,
    /// Two layers share a name.
    #[error("{at}: duplicate layer name `{name}`")]
    DuplicateName {
        /// The layer.
        at: String,
        /// The name.
        name: String,
    },
    /// A linear layer after an image-shaped output.
    #[error("{at} needs a flat input but gets {shape:?}; add a `flatten` layer before it")]
    NeedsFlat {
        /// The layer.
        at: String,
        /// The input it gets.
        shape: Vec<usize>,
    },
    /// A convolution or pool after a flat output.
    #[error("{at} needs a [channels, height, width] input but gets {shape:?}")]
    NeedsImage {
        /// The layer.
        at: String,
        /// The input it gets.
        shape: Vec<usize>,
    },
    /// A size that must be positive is 0.
    #[error("{at}: {fields} must be positive")]
    NotPositive {
        /// The layer.
        at: String,
        /// Which fields (`` `out` ``, or `` `out`, `kernel` and `stride` ``).
        fields: &'static str,
    },
    /// Padding so large the padded size overflows.
    #[error("{at}: padding {padding} is too large")]
    Padding {
        /// The layer.
        at: String,
        /// The padding.
        padding: usize,
    },
    /// A kernel or pooling window larger than its (padded) input.
    #[error("{at}: {what} {size} is larger than the {padded}input {shape:?}")]
    Window {
        /// The layer.
        at: String,
        /// `kernel` or `window`.
        what: &'static str,
        /// The kernel or window size.
        size: usize,
        /// `"padded "` for convolutions, empty for pools.
        padded: &'static str,
        /// The input.
        shape: Vec<usize>,
    },
    /// An overlapping (or empty) pooling window.
    #[error(
        "{at}: only non-overlapping windows are supported (stride = kernel > 0), got kernel {kernel}, stride {stride}"
    )]
    Overlapping {
        /// The layer.
        at: String,
        /// The window.
        kernel: usize,
        /// The stride.
        stride: usize,
    },
    /// A setting outside the values it may take.
    #[error("{at}: `{field}` = {value} is outside {valid}")]
    OutOfRange {
        /// The layer.
        at: String,
        /// The setting.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What it may be, e.g. `(0, 1]`.
        valid: &'static str,
    },
    /// Flattening a shape whose element count overflows.
    #[error("{at}: {shape:?} has too many elements")]
    TooLarge {
        /// The layer.
        at: String,
        /// The shape.
        shape: Vec<usize>,
    },
}
