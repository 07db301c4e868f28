"""Texts of the register form (the vendor's "Import Image")."""

MESSAGES: dict[str, tuple[str, str]] = {
    "register.title": ("Register an image", "注册镜像"),
    "register.intro": (
        "Register a file from your buckets as a private image. Check it first: the check "
        "finds what the import would refuse, and fills this form in.",
        "将桶中的文件注册为私有镜像。建议先检查文件：检查会找出导入时会被拒绝的问题，并自动填写本表单。",
    ),
    "register.refused": (
        "The image was not registered: correct the fields marked below.",
        "镜像未注册：请修改下面标出的字段。",
    ),
    "register.image_type": ("Image type", "镜像类型"),
    "register.image_type.system": ("System disk image", "系统盘镜像"),
    "register.image_type.data": ("Data disk image", "数据盘镜像"),
    "register.source_legend": ("Image file", "镜像文件"),
    "register.source": ("File in a bucket", "桶中的文件"),
    "register.source_hint": (
        "The bucket and the file must be of the Standard storage class.",
        "桶和文件的存储类别都必须是标准存储。",
    ),
    "register.fast_import": ("Fast import", "快速导入"),
    "register.fast_import_hint": (
        "Stores the file without converting it: a RAW file with its bitmap file (.mf, same "
        "base name, same bucket) or a ZVHD2 file, optimized beforehand, up to 1 TiB. Files "
        "over 128 GiB can only be imported this way. It makes no configuration.",
        "不转换格式，直接保存文件：RAW 文件及其位表文件（.mf，同名且在同一个桶中）或 ZVHD2 文件，"
        "须事先优化，最大 1 TiB。超过 128 GiB 的文件只能用这种方式导入。快速导入不做任何配置。",
    ),
    "register.bitmap_found": (
        "A RAW file's bitmap file {bitmap} is beside it.",
        "RAW 文件的位表文件 {bitmap} 已在同一位置。",
    ),
    "register.bitmap_missing": (
        "A RAW file needs its bitmap file {bitmap}, which is not in the bucket yet "
        "(imageport bitmap disk.raw writes it). A ZVHD2 file needs none.",
        "RAW 文件需要位表文件 {bitmap}，但桶中还没有（可用 imageport bitmap disk.raw 生成）。"
        "ZVHD2 文件不需要位表文件。",
    ),
    "register.system_legend": ("System", "系统"),
    "register.is_config": ("Automatic configuration", "自动配置"),
    "register.is_config_hint": (
        "Fixes what the check finds before the image is stored: drivers in the initrd, "
        "filesystems by UUID, network by DHCP, cloud-init. Not with fast import.",
        "在保存镜像前修复检查发现的问题：initrd 中的驱动、按 UUID 挂载文件系统、DHCP 网络、cloud-init。"
        "不能与快速导入同时使用。",
    ),
    "register.is_config_refused": (
        "Not offered by this server: {reason}",
        "本服务器不提供此功能：{reason}",
    ),
    "register.is_config_conflict": (
        "Fast import cannot be combined with automatic configuration: untick one of them.",
        "快速导入不能与自动配置同时使用：请取消其中一项。",
    ),
    "register.os_version": ("Operating system", "操作系统"),
    "register.os_version.detect": ("Detect from the image", "从镜像中识别"),
    "register.os_version_hint": (
        "Required for fast import. The import replaces it with the system it finds in the image.",
        "快速导入时必填。导入时会以在镜像中识别到的系统为准。",
    ),
    "register.architecture": ("Architecture", "架构"),
    "register.boot_mode": ("Boot mode", "启动方式"),
    "register.boot_mode_hint": (
        "Must match the image: a UEFI-only image registered for BIOS does not boot. Arm images "
        "boot with UEFI.",
        "必须与镜像一致：只支持 UEFI 的镜像以 BIOS 方式注册将无法启动。Arm 镜像使用 UEFI 启动。",
    ),
    "register.boot_test": ("Boot test", "启动测试"),
    "register.boot_test_hint": (
        "Ends the import by booting the image once and recording whether it reaches a login "
        "prompt.",
        "导入最后启动一次镜像，并记录其是否进入登录提示。",
    ),
    "register.data_legend": ("Data disk", "数据盘"),
    "register.os_type": ("For servers running", "用于运行以下系统的云服务器"),
    "register.image_legend": ("Image", "镜像"),
    "register.min_disk": ("Minimum disk (GiB)", "最小磁盘 (GiB)"),
    "register.min_disk_hint": (
        "A system disk is 40-1024 GiB, a data disk 40-2048 GiB; at least the image's virtual "
        "disk size.",
        "系统盘为 40-1024 GiB，数据盘为 40-2048 GiB；不能小于镜像的虚拟磁盘大小。",
    ),
    "register.name": ("Name", "名称"),
    "register.name_hint": (
        "1-128 letters, digits, spaces and - . _ (not starting or ending with a space).",
        "1-128 个字符，可包含字母、数字、空格和 - . _（不能以空格开头或结尾）。",
    ),
    "register.description": ("Description", "描述"),
    "register.tags": ("Tags", "标签"),
    "register.tags_hint": (
        "One key=value a line, at most {count}: letters, digits, _ and -.",
        "每行一个 key=value，最多 {count} 个：字母、数字、_ 和 -。",
    ),
    "register.submit": ("Register", "注册"),
    "register.data_images_legend": ("Data disk images", "数据盘镜像"),
    "register.data_images_hint": (
        "Up to {count} data disks' image files registered with this system disk image, each "
        "as a data disk image of its own (named after this image: NAME-data1...).",
        "可随系统盘镜像一起注册最多 {count} 个数据盘镜像文件，每个成为独立的数据盘镜像"
        "（以本镜像命名：名称-data1……）。",
    ),
    "register.data_image_source": ("Data disk {row}: file", "数据盘 {row}：镜像文件"),
    "register.data_image_min_disk": ("Data disk {row}: size (GiB)", "数据盘 {row}：容量 (GiB)"),
    "register.data_image_none": ("None", "无"),
}
