"""Texts of the sign-in page."""

MESSAGES: dict[str, tuple[str, str]] = {
    "signin.title": ("Sign in", "登录"),
    "signin.intro": (
        "Sign in with your project's access key and secret key, or with a token from the "
        "token route (POST /v3/auth/tokens).",
        "使用项目的访问密钥 (AK) 和私有访问密钥 (SK) 登录，或使用令牌接口 "
        "(POST /v3/auth/tokens) 签发的令牌登录。",
    ),
    "signin.with_key": ("Access key", "访问密钥"),
    "signin.access_key": ("Access key ID (AK)", "访问密钥 ID (AK)"),
    "signin.secret_key": ("Secret access key (SK)", "私有访问密钥 (SK)"),
    "signin.with_token": ("Token", "令牌"),
    "signin.token": ("X-Auth-Token", "X-Auth-Token"),
    "signin.submit": ("Sign in", "登录"),
    "signin.failed": (
        "The access key is unknown or revoked, the secret is wrong, or the token has expired.",
        "访问密钥不存在或已停用、私有访问密钥错误，或令牌已过期。",
    ),
    "signin.signed_out": ("You are signed out.", "您已退出登录。"),
    "signin.expired": ("Your session has ended; sign in again.", "会话已结束，请重新登录。"),
}
