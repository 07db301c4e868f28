"""Texts of check reports (the check page and the image page's report)."""

MESSAGES: dict[str, tuple[str, str]] = {
    "report.title": ("Check report", "检查报告"),
    "report.verdict.pass": ("Passes", "通过"),
    "report.verdict.fail": ("Fails", "未通过"),
}
