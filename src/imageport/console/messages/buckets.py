"""Texts of the buckets area: buckets, objects and uploads."""

MESSAGES: dict[str, tuple[str, str]] = {
    "buckets.actions": ("Actions", "操作"),
    "buckets.next_page": ("Next page", "下一页"),
    "buckets.first_page": ("First page", "第一页"),
    # storage classes (the bucket API's canonical names)
    "class.STANDARD": ("Standard", "标准存储"),
    "class.WARM": ("Infrequent Access (WARM)", "低频访问存储 (WARM)"),
    "class.COLD": ("Archive (COLD)", "归档存储 (COLD)"),
    # the buckets page
    "buckets.title": ("Buckets", "桶列表"),
    "buckets.name": ("Bucket name", "桶名称"),
    "buckets.storage_class": ("Storage class", "存储类别"),
    "buckets.created": ("Created", "创建时间"),
    "buckets.empty": ("No buckets yet: create one below.", "暂无桶，请在下方创建。"),
    "buckets.create": ("Create a bucket", "创建桶"),
    "buckets.create_submit": ("Create bucket", "创建桶"),
    "buckets.name_hint": (
        "3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or "
        "digit. Bucket names are shared by all projects.",
        "3 到 63 个字符，只能包含小写字母、数字、“.” 和 “-”，且以字母或数字开头和结尾。"
        "桶名称在所有项目中全局唯一。",
    ),
    "buckets.default": ("default", "默认"),
    "buckets.class_hint": (
        "Images can be imported only from objects of the Standard class in a Standard bucket "
        "(IMG-STORAGE-CLASS); the other classes are for keeping files.",
        "只能从标准存储桶中标准存储类别的对象导入镜像 (IMG-STORAGE-CLASS)；其他存储类别仅用于保存文件。",
    ),
    "buckets.delete_confirm": (
        "Delete the bucket {name}? Only an empty bucket can be deleted.",
        "确定删除桶 {name} 吗？只能删除空桶。",
    ),
    "buckets.delete_named": ("Delete bucket {name}", "删除桶 {name}"),
    "buckets.deleted": ("Bucket {name} deleted.", "桶 {name} 已删除。"),
    # refusals the console explains (the code is shown beside)
    "refused.BucketAlreadyExists": (
        "This name is taken by another project: bucket names are shared by all projects.",
        "该名称已被其他项目使用：桶名称在所有项目中全局唯一。",
    ),
    "refused.BucketAlreadyOwnedByYou": (
        "You already have a bucket of this name.",
        "您已拥有同名的桶。",
    ),
    "refused.BucketNotEmpty": (
        "The bucket still holds objects or unfinished uploads: delete them first.",
        "桶中仍有对象或未完成的上传，请先删除它们。",
    ),
    "refused.InvalidBucketName": (
        "This is not a valid bucket name: use 3-63 lower-case letters, digits, '.' and '-', "
        "starting and ending with a letter or digit.",
        "桶名称无效：请使用 3 到 63 个小写字母、数字、“.” 和 “-”，并以字母或数字开头和结尾。",
    ),
    "refused.InvalidStorageClass": (
        "Choose one of the storage classes offered.",
        "请选择列出的存储类别之一。",
    ),
    # a bucket's page
    "bucket.title": ("Bucket {name}", "桶 {name}"),
    "bucket.back": ("All buckets", "全部桶"),
    "bucket.created_notice": ("Bucket {name} created.", "桶 {name} 已创建。"),
    "bucket.region": ("Region", "区域"),
    "bucket.not_importable": (
        "(images cannot be imported from this class)",
        "（此存储类别的对象不能用于导入镜像）",
    ),
    "bucket.upload": ("Upload files", "上传文件"),
    "bucket.delete": ("Delete bucket", "删除桶"),
    "bucket.folders": ("Folder", "文件夹"),
    "bucket.objects": ("Objects", "对象"),
    "bucket.empty": ("Nothing here yet.", "这里还没有对象。"),
    "objects.key": ("Object key", "对象名"),
    "objects.size": ("Size", "大小"),
    "objects.modified": ("Last modified", "最后修改时间"),
    "objects.folder": ("Folder", "文件夹"),
    "objects.bytes": ("{size} bytes", "{size} 字节"),
    "objects.check": ("Check", "检查"),
    "objects.check_named": ("Check {key}", "检查 {key}"),
    "objects.register": ("Register as image", "注册镜像"),
    "objects.register_named": ("Register {key} as an image", "将 {key} 注册为镜像"),
    "objects.delete_named": ("Delete {key}", "删除 {key}"),
    "objects.delete_confirm": ("Delete the object {key}?", "确定删除对象 {key} 吗？"),
    "objects.deleted": ("Object {key} deleted.", "对象 {key} 已删除。"),
    # the upload page
    "upload.title": ("Upload to {name}", "上传到 {name}"),
    "upload.back": ("Back to bucket {name}", "返回桶 {name}"),
    "upload.intro": (
        "The file goes from your browser straight to the bucket, in parts sent four at a time. "
        "An interrupted upload (a pause, a dropped connection, a closed page) resumes where it "
        "stopped: choose the same file again and only the missing parts are sent.",
        "文件由浏览器直接分段上传到桶中，每次并行发送四个分段。上传中断后（暂停、网络断开或关闭页面），"
        "再次选择同一文件即可从中断处继续，只发送尚未上传的分段。",
    ),
    "upload.needs_script": (
        "Uploading from the browser needs JavaScript. Without it, use the CLI: imageport upload.",
        "浏览器上传需要启用 JavaScript。也可以使用命令行：imageport upload。",
    ),
    "upload.form": ("Upload a file", "上传文件"),
    "upload.file_legend": ("File", "文件"),
    "upload.file": ("Image file", "镜像文件"),
    "upload.file_hint": (
        "Any size up to 5 TiB: large files go up in parts, and each part's SHA-256 is checked "
        "by the bucket.",
        "最大 5 TiB：大文件分段上传，桶会校验每个分段的 SHA-256。",
    ),
    "upload.key": ("Object key", "对象名"),
    "upload.key_hint": (
        "The name in the bucket: the current folder and the file's name unless you change it.",
        "对象在桶中的名称：默认为当前文件夹加文件名，可修改。",
    ),
    "upload.bitmap_legend": (
        "Bitmap file for fast import (RAW images)",
        "快速导入的位表文件（RAW 镜像）",
    ),
    "upload.bitmap": ("Bitmap file (.mf), optional", "位表文件 (.mf)，可选"),
    "upload.bitmap_hint": (
        "Fast import of a RAW image needs its bitmap beside it, with the same base name and the "
        "extension .mf. Make it with: imageport bitmap disk.raw.",
        "RAW 镜像快速导入需要同目录下同名、扩展名为 .mf 的位表文件。生成命令：imageport bitmap disk.raw。",
    ),
    "upload.bitmap_key": ("It will be stored as {key}.", "它将保存为 {key}。"),
    "upload.advanced": ("Advanced", "高级选项"),
    "upload.part_size": ("Part size (MiB)", "分段大小 (MiB)"),
    "upload.part_size_hint": (
        "5 to {max} MiB; raised when a file needs more than 10,000 parts. A resumed upload "
        "keeps the part size it started with.",
        "5 到 {max} MiB；文件超过 10,000 个分段时会自动调大。续传时沿用最初的分段大小。",
    ),
    "upload.start": ("Start upload", "开始上传"),
    "upload.pause": ("Pause", "暂停"),
    "upload.resume": ("Resume", "继续"),
    "upload.abort": ("Abort", "取消上传"),
    "upload.progress": ("Progress", "进度"),
    "upload.progress_text": (
        "{sent} of {total} ({percent}%) · {speed}/s · {left} left",
        "已上传 {sent}，共 {total}（{percent}%）· {speed}/s · 剩余 {left}",
    ),
    "upload.progress_short": (
        "{sent} of {total} ({percent}%)",
        "已上传 {sent}，共 {total}（{percent}%）",
    ),
    "upload.time.seconds": ("{s} s", "{s} 秒"),
    "upload.time.minutes": ("{m} min {s} s", "{m} 分 {s} 秒"),
    "upload.time.hours": ("{h} h {m} min", "{h} 小时 {m} 分"),
    "upload.status.ready": ("Choose a file to upload.", "请选择要上传的文件。"),
    "upload.status.need_file": ("Choose a file first.", "请先选择文件。"),
    "upload.status.checking": (
        "Looking for an earlier upload of this file…",
        "正在查找此文件之前的上传…",
    ),
    "upload.status.resumable": (
        "An earlier upload of this file stopped with {done} of {total} parts on the server: "
        "Start sends only the rest.",
        "此文件之前的上传已中断，服务器上已有 {done}/{total} 个分段：点击开始上传只发送其余分段。",
    ),
    "upload.status.starting": ("Starting the upload…", "正在开始上传…"),
    "upload.status.resuming": (
        "Resuming: {done} of {total} parts are already on the server; sending the other {left}.",
        "继续上传：服务器上已有 {done}/{total} 个分段，正在发送其余 {left} 个。",
    ),
    "upload.status.uploading": (
        "Uploading {key} in {total} parts…",
        "正在上传 {key}，共 {total} 个分段…",
    ),
    "upload.status.paused": (
        "Paused with {done} of {total} parts on the server. Resume continues, even after this "
        "page is reloaded.",
        "已暂停，服务器上已有 {done}/{total} 个分段。点击继续即可续传，刷新页面后也可以。",
    ),
    "upload.status.offline": (
        "The connection dropped; the upload goes on when it is back.",
        "网络已断开，恢复后将继续上传。",
    ),
    "upload.status.retrying": (
        "Part {number} failed ({reason}); trying again in {seconds} s.",
        "分段 {number} 上传失败（{reason}），{seconds} 秒后重试。",
    ),
    "upload.status.failed": (
        "The upload stopped: {reason}. Resume tries again.",
        "上传已停止：{reason}。点击继续重试。",
    ),
    "upload.status.completing": ("Joining the parts…", "正在合并分段…"),
    "upload.status.done": ("Uploaded {key} ({size}).", "已上传 {key}（{size}）。"),
    "upload.status.aborted": (
        "Upload aborted; the parts already sent were deleted.",
        "已取消上传，已发送的分段已删除。",
    ),
    "upload.status.bitmap": ("Uploading the bitmap as {key}…", "正在上传位表文件 {key}…"),
    "upload.status.bitmap_done": (
        "Uploaded {key} ({size}) and its bitmap {bitmap}.",
        "已上传 {key}（{size}）及其位表文件 {bitmap}。",
    ),
    "upload.abort_confirm": (
        "Abort the upload of {key}? The parts already sent are deleted.",
        "确定取消 {key} 的上传吗？已发送的分段将被删除。",
    ),
    "upload.abort_named": ("Abort the upload of {key}", "取消 {key} 的上传"),
    "upload.aborted_one": ("The upload was aborted.", "已取消该上传。"),
    "upload.interrupted": (
        "Interrupted in this browser: {key} ({size}). Choose the same file to resume it.",
        "本浏览器中断的上传：{key}（{size}）。选择同一文件即可续传。",
    ),
    "upload.link_bucket": ("Show in the bucket", "在桶中查看"),
    "upload.link_check": ("Check it", "检查"),
    "upload.link_register": ("Register it as an image", "注册为镜像"),
    "upload.unfinished": ("Unfinished uploads in this bucket", "此桶中未完成的上传"),
    "upload.started": ("Started", "开始时间"),
    "upload.none_unfinished": ("None.", "无。"),
    "upload.more_unfinished": (
        "More unfinished uploads exist; the first ones by key are listed.",
        "还有更多未完成的上传；按名称顺序只列出前面的部分。",
    ),
}
