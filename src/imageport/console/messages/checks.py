"""Texts of the check page and the rules' pages."""

MESSAGES: dict[str, tuple[str, str]] = {
    "check.title": ("Check an object", "检查对象"),
    "check.intro": (
        "Runs every rule the import will run on a file in your buckets, without registering "
        "it: what would fail, why, and how to fix it.",
        "对桶中的文件运行导入时会运行的全部规则，但不注册镜像：哪些检查会失败、原因以及修复方法。",
    ),
    "check.source": ("Object", "对象"),
    "check.choose": ("Choose an object…", "选择对象…"),
    "check.source_invalid": (
        "Give the object as bucket and key (bucket:key).",
        "请以“桶:对象键”的形式指定对象。",
    ),
    "check.type": ("Check as", "检查为"),
    "check.type.ECS": ("System disk image", "系统盘镜像"),
    "check.type.DataImage": ("Data disk image", "数据盘镜像"),
    "check.type.IsoImage": ("ISO image", "ISO 镜像"),
    "check.min_disk": ("Disk size (GiB)", "磁盘大小 (GiB)"),
    "check.min_disk_hint": (
        "Optional: the disk you will register it with; the virtual disk must fit in it.",
        "可选：注册时填写的磁盘大小，虚拟磁盘必须能放入其中。",
    ),
    "check.architecture": ("Architecture", "架构"),
    "check.architecture.none": ("Not declared", "不声明"),
    "check.boot_mode": ("Boot mode", "启动方式"),
    "check.boot_mode.default": ("Default (BIOS; UEFI for Arm)", "默认（BIOS；Arm 为 UEFI）"),
    "check.fast_import": ("Fast import", "快速导入"),
    "check.fast_import_hint": (
        "RAW with its .mf bitmap file beside it, or ZVHD2, optimized beforehand; up to 1 TiB.",
        "RAW 文件（同目录下需有同名的 .mf 位表文件）或 ZVHD2 文件，且须事先优化；最大 1 TiB。",
    ),
    "check.uninitialized": ("Uninitialized image", "未初始化镜像"),
    "check.uninitialized_hint": (
        "It will be fixed later in a server made from it: the initialization rules only warn.",
        "镜像将在由其创建的云服务器中再做配置：初始化规则只给出警告。",
    ),
    "check.submit": ("Check", "检查"),
    "check.done": ("Checked {source} in {seconds} s.", "已检查 {source}，用时 {seconds} 秒。"),
    "check.register": ("Register this image", "注册此镜像"),
    "rules.title": ("Rules", "检查规则"),
    "rules.intro": (
        "Every rule a check and an import run, with what it checks, why it matters and how to "
        "fix what it finds.",
        "检查和导入时运行的全部规则：检查什么、为什么重要，以及如何修复发现的问题。",
    ),
    "rules.id": ("Rule", "规则"),
    "rules.severity": ("Severity", "严重程度"),
    "rules.rule_title": ("Title", "标题"),
    "rules.judges": ("Judges", "适用于"),
    "rules.kind.system": ("system disk images", "系统盘镜像"),
    "rules.kind.data": ("data disk images", "数据盘镜像"),
    "rules.kind.iso": ("ISO images", "ISO 镜像"),
    "rules.initialization": ("Initialization rule", "初始化规则"),
    "rules.initialization_yes": (
        "Yes: part of the configuration an image needs before servers are made from it.",
        "是：属于由镜像创建云服务器之前镜像需要完成的配置。",
    ),
    "rules.tolerated": (
        "Its errors are warnings for an image registered uninitialized.",
        "对于以未初始化方式注册的镜像，其错误只作为警告。",
    ),
    "rules.default_fix": ("Default fix", "默认修复方法"),
    "rules.english_only": (
        "The rule's full documentation is in English.",
        "规则的完整说明仅提供英文版。",
    ),
    "rule.what": ("What it checks", "检查内容"),
    "rule.why": ("Why it matters", "为什么重要"),
    "rule.fix": ("How to fix", "如何修复"),
    "rule.example": ("Example", "示例"),
}
