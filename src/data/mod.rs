//! Datasets: the IDX file format (MNIST), where data lives, and fetching it.
