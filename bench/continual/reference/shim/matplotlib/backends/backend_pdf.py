"""Stand-in: no PDF is written."""


class PdfPages:
    pass
