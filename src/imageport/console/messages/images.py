"""Texts of the images area."""

MESSAGES: dict[str, tuple[str, str]] = {
    "images.title": ("Private images", "私有镜像"),
    "images.name": ("Name", "名称"),
    "images.status": ("Status", "状态"),
    "images.os": ("OS", "操作系统"),
    "images.size": ("Minimum disk", "最小系统盘"),
    "images.created": ("Created", "创建时间"),
    "images.empty": ("No images yet.", "暂无镜像。"),
}
