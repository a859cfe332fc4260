"""Design tokens: every colour, size and label style used by the dashboard, in one place."""

from __future__ import annotations

from aml.domain import AlertStatus, CaseStatus, RiskLevel

PRIMARY = "#1f4e79"
SECONDARY = "#5b7083"
ACCENT = "#c0392b"
POSITIVE = "#2e7d32"
NEGATIVE = "#c62828"
WARNING = "#ef6c00"
PAGE_BG = "#f5f7fa"

RISK_COLOURS: dict[RiskLevel, str] = {
    RiskLevel.LOW: "#2e7d32",
    RiskLevel.MEDIUM: "#f9a825",
    RiskLevel.HIGH: "#ef6c00",
    RiskLevel.CRITICAL: "#b71c1c",
}
ALERT_STATUS_COLOURS: dict[AlertStatus, str] = {
    AlertStatus.OPEN: "#1565c0",
    AlertStatus.UNDER_REVIEW: "#6a1b9a",
    AlertStatus.ESCALATED: "#ef6c00",
    AlertStatus.CLOSED_LEGITIMATE: "#2e7d32",
    AlertStatus.CLOSED_SUSPICIOUS: "#8d6e63",
    AlertStatus.CLOSED_FRAUD: "#b71c1c",
}
CASE_STATUS_COLOURS: dict[CaseStatus, str] = {
    CaseStatus.OPEN: "#1565c0",
    CaseStatus.INVESTIGATING: "#6a1b9a",
    CaseStatus.ESCALATED: "#ef6c00",
    CaseStatus.CLOSED_NO_ACTION: "#2e7d32",
    CaseStatus.CLOSED_SAR_FILED: "#b71c1c",
}

CARD = "p-4 min-w-[10rem]"
CARD_VALUE = "text-3xl font-semibold"
CARD_LABEL = "text-sm text-gray-600"
SECTION_TITLE = "text-lg font-semibold mt-2"
MUTED = "text-sm text-gray-600"
MONO = "font-mono text-sm"
PAGE_WIDTH = "w-full max-w-7xl mx-auto p-4 gap-4"
CHART_HEIGHT = "h-64 w-full"


def apply() -> None:
    """Install the colour palette for the current page."""
    from nicegui import ui

    ui.colors(
        primary=PRIMARY,
        secondary=SECONDARY,
        accent=ACCENT,
        positive=POSITIVE,
        negative=NEGATIVE,
        warning=WARNING,
    )
    ui.query("body").style(f"background-color: {PAGE_BG}")


def label_of(value: str) -> str:
    """``closed_sar_filed`` → ``Closed sar filed`` for display."""
    return value.replace("_", " ").capitalize()
