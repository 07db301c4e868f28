"""Texts of the servers area: the list, the create form, a server's page and its consoles."""

MESSAGES: dict[str, tuple[str, str]] = {
    # the list
    "servers.title": ("Servers", "云服务器"),
    "servers.create": ("Create server", "创建云服务器"),
    "servers.empty": ("No servers yet.", "暂无云服务器。"),
    "servers.name": ("Name", "名称"),
    "servers.status": ("Status", "状态"),
    "servers.flavor": ("Flavor", "规格"),
    "servers.image": ("Image", "镜像"),
    "servers.created": ("Created", "创建时间"),
    "servers.actions": ("Actions", "操作"),
    "servers.flavor_size": (
        "{id} (vCPUs: {vcpus}, memory: {ram} GiB)",
        "{id}（vCPU：{vcpus} 核，内存：{ram} GiB）",
    ),
    "servers.pages": ("Pages", "分页"),
    "servers.previous": ("Previous page", "上一页"),
    "servers.next": ("Next page", "下一页"),
    "servers.page_of": (
        "Page {page} of {pages} ({count} servers)",
        "第 {page} 页，共 {pages} 页（{count} 台云服务器）",
    ),
    "servers.gone": ("{name} was deleted.", "{name} 已删除。"),
    "servers.action.start": ("Start", "开机"),
    "servers.action.stop": ("Stop", "关机"),
    "servers.action.reboot": ("Reboot", "重启"),
    "servers.confirm_delete": (
        "Delete the server {name} and its system disk? This cannot be undone.",
        "确定删除云服务器 {name} 及其系统盘吗？删除后无法恢复。",
    ),
    "servers.done.start": ("Starting {name}…", "正在开机：{name}…"),
    "servers.done.stop": ("Stopping {name}…", "正在关机：{name}…"),
    "servers.done.reboot": ("Rebooting {name}…", "正在重启：{name}…"),
    "servers.done.delete": ("Deleting {name}…", "正在删除：{name}…"),
    # statuses (the vendor's) and the tasks under way
    "servers.status.BUILD": ("Creating", "创建中"),
    "servers.status.ACTIVE": ("Running", "运行中"),
    "servers.status.SHUTOFF": ("Stopped", "关机"),
    "servers.status.REBOOT": ("Rebooting", "重启中"),
    "servers.status.HARD_REBOOT": ("Force rebooting", "强制重启中"),
    "servers.status.ERROR": ("Error", "故障"),
    "servers.status.DELETED": ("Deleted", "已删除"),
    "servers.status.UNKNOWN": ("Unknown", "未知"),
    "servers.task.spawning": ("starting for the first time", "首次启动中"),
    "servers.task.powering-off": ("stopping", "关机中"),
    "servers.task.powering-on": ("starting", "开机中"),
    "servers.task.rebooting": ("rebooting", "重启中"),
    "servers.task.rebooting_hard": ("force rebooting", "强制重启中"),
    "servers.task.deleting": ("deleting", "删除中"),
    "servers.task.image_snapshot": ("copying its disk for an image", "正在复制系统盘以创建镜像"),
    # forms
    "servers.form.refused": (
        "This was not accepted: see the field marked below.",
        "提交未被接受：请查看下方标出的字段。",
    ),
    "servers.form.see_field": ("Go to the field", "转到该字段"),
    # the create form
    "servers.new.title": ("Create a server", "创建云服务器"),
    "servers.new.image": ("Image", "镜像"),
    "servers.new.no_images": (
        "The project has no active system disk image yet: import one first.",
        "项目中还没有可用的系统盘镜像，请先导入镜像。",
    ),
    "servers.new.name": ("Server name", "云服务器名称"),
    "servers.new.name_hint": (
        "1-64 letters, digits, '.', '_' or '-'.",
        "1-64 个字符，可包含字母、数字、“.”、“_”和“-”。",
    ),
    "servers.new.flavor": ("Flavor", "规格"),
    "servers.new.disk": ("System disk (GiB)", "系统盘（GiB）"),
    "servers.new.disk_hint": (
        "{min}-{max} GiB; empty: {min} GiB, or the image's minimum when it is larger.",
        "{min}-{max} GiB；留空则为 {min} GiB，若镜像要求的最小系统盘更大则取镜像的最小值。",
    ),
    "servers.new.login": ("Log in with", "登录凭证"),
    "servers.new.login_keypair": ("With a key pair", "使用密钥对"),
    "servers.new.login_password": ("With a password", "使用密码"),
    "servers.new.keypair": ("Key pair", "密钥对"),
    "servers.new.no_keypairs": (
        "The project has no key pair: create one with the key pair API "
        "(POST /v2.1/{project_id}/os-keypairs) or log in with a password.",
        "项目中没有密钥对：请通过密钥对接口（POST /v2.1/{project_id}/os-keypairs）创建，"
        "或使用密码登录。",
    ),
    "servers.new.password": ("Password", "密码"),
    "servers.new.password_hint": (
        "8-26 characters, with three of: upper-case letters, lower-case letters, digits, "
        "special characters (!@$%^-_=+[{}]:,./?~#*); not containing root. It is given to the "
        "server at its first start and kept nowhere.",
        "8-26 个字符，至少包含大写字母、小写字母、数字、特殊字符（!@$%^-_=+[{}]:,./?~#*）"
        "中的三种，且不能包含 root。密码仅在首次启动时交给云服务器，不会被保存。",
    ),
    "servers.new.password_confirm": ("Confirm the password", "确认密码"),
    "servers.new.description": ("Description (optional)", "描述（可选）"),
    "servers.new.submit": ("Create server", "创建云服务器"),
    # a server's page
    "server.create_image": ("Create image", "创建镜像"),
    "server.properties": ("Properties", "基本信息"),
    "server.id": ("ID", "ID"),
    "server.disk": ("System disk", "系统盘"),
    "server.disk_size": ("{size} GiB", "{size} GiB"),
    "server.keypair": ("Key pair", "密钥对"),
    "server.address": ("Private address", "私有 IP 地址"),
    "server.ssh": ("SSH (from this host)", "SSH（本机访问地址）"),
    "server.zone": ("Availability zone", "可用区"),
    "server.launched": ("Started", "启动时间"),
    "server.description": ("Description", "描述"),
    "server.fault": ("Fault", "故障信息"),
    "server.log": ("Console log", "控制台日志"),
    "server.log_auto": ("Refresh every few seconds", "每隔几秒自动刷新"),
    "server.log_empty": ("(nothing yet)", "（暂无内容）"),
    "server.log_updated": ("Updated at {time}", "更新于 {time}"),
    "server.serial": ("Serial console", "串口控制台"),
    "server.serial_hint": (
        "The server's serial console (ttyS0). Press Enter for a login prompt. "
        "Shift+Escape leaves the terminal.",
        "云服务器的串口控制台（ttyS0）。按回车键显示登录提示。按 Shift+Esc 退出终端。",
    ),
    "server.vnc": ("Remote login", "远程登录"),
    "server.vnc_hint": (
        "The server's screen (noVNC). Shift+Escape leaves it.",
        "云服务器的屏幕（noVNC）。按 Shift+Esc 退出。",
    ),
    "server.vnc_cad": ("Send Ctrl+Alt+Del", "发送 Ctrl+Alt+Del"),
    "server.console.idle": ("Not connected.", "未连接。"),
    "server.console.connect": ("Connect", "连接"),
    "server.console.disconnect": ("Disconnect", "断开"),
    "server.console.connecting": ("Connecting…", "正在连接…"),
    "server.console.connected": ("Connected.", "已连接。"),
    "server.console.closed": ("Disconnected.", "已断开。"),
    "server.console.failed": ("Could not connect:", "无法连接："),
    # create image from this server
    "server.image.title": ("Create an image from a server", "通过云服务器创建镜像"),
    "server.image.intro": (
        "A private image is made of the system disk of {name} (a copy taken now; a running "
        "server is paused for a moment). You then see the image's page.",
        "将使用云服务器 {name} 的系统盘创建私有镜像（立即复制；运行中的云服务器会短暂暂停）。"
        "创建后将打开该镜像的页面。",
    ),
    "server.image.name": ("Image name", "镜像名称"),
    "server.image.name_hint": (
        "1-128 letters, digits, spaces, '-', '.' or '_'.",
        "1-128 个字符，可包含字母、数字、空格、“-”、“.”和“_”。",
    ),
    "server.image.description": ("Description (optional)", "描述（可选）"),
    "server.image.submit": ("Create image", "创建镜像"),
}
