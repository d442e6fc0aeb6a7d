"""Stand-in for matplotlib: the reference code imports it for plots this rerun never draws."""


def use(*args, **kwargs):
    pass
