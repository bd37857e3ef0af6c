//! The console's two languages. Every label, hint and message is a [`T`]
//! with its English and Korean text side by side, so a text cannot exist in
//! one language only. Validation messages come from the same parsers as the
//! API (in English); [`field_message`] says them in Korean from a table of
//! their templates, and a test runs every parser's failures through it.

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ko,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Ko => "ko",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Self::En),
            "ko" => Some(Self::Ko),
            _ => None,
        }
    }

    /// The preferred of Korean and English in an `Accept-Language` header
    /// (highest q wins, earlier wins ties); English when neither is named.
    pub fn from_accept_language(header: &str) -> Self {
        let mut best: Option<(Self, f32)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or_default();
            let Some(lang) = Self::parse(primary) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((lang, q));
            }
        }
        best.map_or(Self::En, |(lang, _)| lang)
    }
}

macro_rules! texts {
    ($($key:ident => $en:literal, $ko:literal;)*) => {
        /// A text of the console, in both languages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum T { $($key),* }

        impl T {
            pub const ALL: &'static [T] = &[$(T::$key),*];

            pub fn get(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((T::$key, Lang::En) => $en, (T::$key, Lang::Ko) => $ko,)*
                }
            }
        }
    };
}

texts! {
    Console => "Console", "콘솔";
    SignIn => "Sign in", "로그인";
    SignOut => "Sign out", "로그아웃";
    SignInIntro => "Sign in with your tenant's API key (bgk_…). Operators sign in with the admin token.", "테넌트 API 키(bgk_…)로 로그인하세요. 운영자는 관리자 토큰으로 로그인합니다.";
    KeyOrToken => "API key or admin token", "API 키 또는 관리자 토큰";
    SignInFailed => "That key or token is not valid.", "키 또는 토큰이 올바르지 않습니다.";
    SignedOut => "You are signed out.", "로그아웃되었습니다.";
    SessionEnded => "Your session ended. Sign in again.", "세션이 끝났습니다. 다시 로그인하세요.";
    FormExpired => "This form has expired or did not come from this console. Go back, reload the page and try again.", "양식이 만료되었거나 이 콘솔에서 보낸 것이 아닙니다. 돌아가서 페이지를 새로 고친 뒤 다시 시도하세요.";
    NotFoundTitle => "Not found", "찾을 수 없음";
    FormExpiredTitle => "Form expired", "양식 만료";
    ErrorTitle => "Error", "오류";
    NotFoundText => "There is nothing here, or it belongs to another tenant.", "찾는 항목이 없거나 다른 테넌트의 항목입니다.";
    ErrorText => "Something went wrong on the server. Try again in a moment.", "서버에서 문제가 발생했습니다. 잠시 후 다시 시도하세요.";
    Language => "Language", "언어";
    Tenants => "Tenants", "테넌트";
    TenantsIntro => "Every tenant of this botgate. Open one to manage its connections and engine.", "이 botgate의 모든 테넌트입니다. 연결과 엔진을 관리하려면 테넌트를 여세요.";
    NewTenant => "New tenant", "새 테넌트";
    TenantName => "Name", "이름";
    CreateTenant => "Create tenant", "테넌트 만들기";
    TenantCreated => "Tenant created. Its API key is shown only now: copy it and give it to the chatbot builder.", "테넌트를 만들었습니다. API 키는 지금 한 번만 표시됩니다. 복사해서 챗봇 빌더에게 전달하세요.";
    ApiKey => "API key", "API 키";
    AuthNetworks => "Auth URLs: allowed networks", "인증 URL 허용 네트워크";
    AuthNetworksHint => "Optional. The networks your internal services call the auth URLs from, comma-separated (e.g. 10.0.0.0/8, 192.168.1.20); other addresses are refused even with the right header. Empty: any address.", "선택 사항. 내부 서비스가 인증 URL을 호출하는 네트워크를 쉼표로 구분해 적습니다(예: 10.0.0.0/8, 192.168.1.20). 다른 주소는 올바른 헤더가 있어도 거부됩니다. 비워 두면 모든 주소를 허용합니다.";
    ApiKeyIntro => "Your services and the console use this tenant's API key (bgk_…). Replace it if it may have leaked: the old key stops working at once, or after the time you choose so that your services can move over. Console sessions signed in with a key end, except this one.", "서비스와 콘솔은 이 테넌트의 API 키(bgk_…)를 사용합니다. 유출되었을 수 있다면 교체하세요. 이전 키는 즉시, 또는 서비스를 옮길 수 있도록 선택한 시간 후에 더 이상 작동하지 않습니다. 키로 로그인한 콘솔 세션은 이 세션을 제외하고 종료됩니다.";
    OldKeyStops => "The old key stops working", "이전 키 사용 중지";
    GraceNow => "at once", "즉시";
    GraceHour => "after one hour", "1시간 후";
    GraceDay => "after one day", "1일 후";
    ReplaceApiKey => "Replace API key", "API 키 교체";
    ReplaceApiKeyConfirm => "A new key is made and shown once. Every service that uses the old key needs the new one.", "새 키를 만들어 한 번만 표시합니다. 이전 키를 사용하는 모든 서비스에 새 키가 필요합니다.";
    ReplaceApiKeyYes => "Yes, replace it", "예, 교체합니다";
    ApiKeyReplaced => "The API key was replaced. The new key is shown only now: copy it.", "API 키를 교체했습니다. 새 키는 지금 한 번만 표시됩니다. 복사하세요.";
    OldKeyUntil => "The old key works until", "이전 키 사용 가능 시각:";
    OldKeyStopped => "The old key no longer works.", "이전 키는 더 이상 작동하지 않습니다.";
    Open => "Open", "열기";
    NoTenants => "No tenants yet.", "아직 테넌트가 없습니다.";
    Viewing => "Tenant", "테넌트";
    Connections => "Connections", "연결";
    NoConnections => "No bot is connected yet.", "아직 연결된 봇이 없습니다.";
    ConnectNaverWorks => "Connect NAVER WORKS", "NAVER WORKS 연결";
    ConnectSlack => "Connect Slack", "Slack 연결";
    ChooseChannel => "Which platform does the bot talk on?", "봇이 어느 플랫폼에서 대화하나요?";
    SlackIntro => "Copy each value from your app's page at api.slack.com/apps. Secrets are encrypted at rest and never shown again. Paste a bot token for one workspace, or a Client ID and Client Secret to install the app into workspaces.", "api.slack.com/apps의 앱 화면에서 각 값을 복사하세요. 비밀 값은 암호화되어 저장되며 다시 표시되지 않습니다. 한 워크스페이스의 봇 토큰을 붙여 넣거나, 여러 워크스페이스에 설치하려면 Client ID와 Client Secret을 입력하세요.";
    SigningSecret => "Signing Secret", "Signing Secret";
    SigningSecretHint => "Basic Information → App Credentials → Signing Secret. botgate checks every request from Slack with it.", "Basic Information → App Credentials → Signing Secret입니다. botgate가 Slack의 모든 요청을 이것으로 확인합니다.";
    BotToken => "Bot User OAuth Token", "Bot User OAuth Token";
    BotTokenHint => "OAuth & Permissions → Bot User OAuth Token (xoxb-…), after installing the app to your workspace.", "앱을 워크스페이스에 설치한 뒤 OAuth & Permissions → Bot User OAuth Token(xoxb-…)입니다.";
    SlackClientIdHint => "Basic Information → App Credentials → Client ID (only for installs into several workspaces).", "Basic Information → App Credentials → Client ID입니다(여러 워크스페이스에 설치할 때만).";
    SlackClientSecretHint => "Same section: Client Secret.", "같은 곳의 Client Secret입니다.";
    SlackScopesHint => "Bot scopes for installs, comma-separated (leave empty for chat:write, commands, app_mentions:read, im:history, channels:history).", "설치할 때 요청할 봇 Scope를 쉼표로 구분해 입력합니다(비워 두면 chat:write, commands, app_mentions:read, im:history, channels:history).";
    CommandAck => "Slash command acknowledgement", "슬래시 명령 응답 문구";
    CommandAckHint => "Optional: shown at once (only to the user) when a slash command arrives, e.g. \"Working on it…\".", "선택: 슬래시 명령이 도착하면 바로(그 사용자에게만) 보여 줄 문구입니다. 예: \"처리 중입니다…\"";
    SlackAuthHeaderHint => "Optional: a value of 16 characters or more your internal services will send to read the bot's token.", "선택: 내부 서비스가 봇 토큰을 읽을 때 보낼 16자 이상의 값입니다.";
    SlackRateLimitHint => "Messages per minute per channel (leave empty for 60: Slack allows about one a second per channel).", "채널별 분당 메시지 수입니다(비워 두면 60: Slack은 채널마다 초당 약 1건을 허용합니다).";
    EventsUrl => "Event Subscriptions → Request URL", "Event Subscriptions → Request URL";
    CommandsUrl => "Slash Commands → Request URL", "Slash Commands → Request URL";
    InteractionsUrl => "Interactivity & Shortcuts → Request URL", "Interactivity & Shortcuts → Request URL";
    SlackAuthUrlsHint => "Your services read a workspace's bot token at the auth URL with ?team=T… and the auth header (DANBEE-NAVERWORKS-AUTH or X-Botgate-Auth): GET for the token, POST …/refresh to rotate it.", "내부 서비스는 인증 헤더(DANBEE-NAVERWORKS-AUTH 또는 X-Botgate-Auth)를 보내고 인증 URL에 ?team=T…를 붙여 워크스페이스의 봇 토큰을 읽습니다. 토큰은 GET, 교체는 POST …/refresh입니다.";
    SlackUrlsHint => "Paste each URL into your app's settings at api.slack.com/apps; subscribe to message.im, message.channels and app_mention bot events.", "각 URL을 api.slack.com/apps의 앱 설정에 붙여 넣고, 봇 이벤트 message.im, message.channels, app_mention을 구독하세요.";
    Workspace => "Workspace", "워크스페이스";
    InstallUrl => "Add to Slack page (share it with workspace admins)", "Add to Slack 페이지(워크스페이스 관리자에게 공유)";
    OAuthRedirectUrl => "OAuth & Permissions → Redirect URLs", "OAuth & Permissions → Redirect URLs";
    Installations => "Installations", "설치된 워크스페이스";
    NoInstallations => "No workspace has installed the app yet: share the Add to Slack page.", "아직 앱을 설치한 워크스페이스가 없습니다. Add to Slack 페이지를 공유하세요.";
    InstalledAt => "Installed", "설치 시각";
    StatusActive => "active", "정상";
    NeedsReinstall => "needs re-install", "재설치 필요";
    RemoveInstallation => "Remove", "제거";
    RemoveInstallationConfirm => "The workspace's tokens are deleted here at once, and its messages go unanswered until its admin adds the app again.", "이 워크스페이스의 토큰이 즉시 삭제되며, 관리자가 앱을 다시 추가할 때까지 메시지에 응답하지 않습니다.";
    RemoveInstallationYes => "Yes, remove it", "예, 제거합니다";
    InstallationRemoved => "Installation removed:", "설치를 제거했습니다:";
    InstallHint => "A workspace marked \"needs re-install\" lost its refresh token: its admin opens the Add to Slack page again. Uninstalling the app in Slack removes its tokens here at once.", "\"재설치 필요\"로 표시된 워크스페이스는 갱신 토큰이 거부된 것입니다. 해당 관리자가 Add to Slack 페이지를 다시 열어야 합니다. Slack에서 앱을 제거하면 여기의 토큰도 즉시 삭제됩니다.";
    SlackConnected => "Connected. Three steps are left in your app's settings at api.slack.com/apps:", "연결되었습니다. api.slack.com/apps의 앱 설정에서 남은 세 단계:";
    SlackStepEvents => "Event Subscriptions: turn it on, paste the Events Request URL below (Slack checks it at once), and subscribe to the bot events message.im, message.channels and app_mention.", "Event Subscriptions: 사용으로 바꾸고 아래 Events Request URL을 붙여 넣은 뒤(Slack이 바로 확인합니다) 봇 이벤트 message.im, message.channels, app_mention을 구독하세요.";
    SlackStepCommands => "Slash Commands: create each command (e.g. /luckydraw) with the Commands Request URL below.", "Slash Commands: 각 명령(예: /luckydraw)을 만들고 아래 Commands Request URL을 입력하세요.";
    SlackStepInteractivity => "Interactivity & Shortcuts: turn it on and paste the Interactions Request URL below, so that buttons work.", "Interactivity & Shortcuts: 사용으로 바꾸고 아래 Interactions Request URL을 붙여 넣어야 버튼이 동작합니다.";
    SlackTestIntro => "Reads the stored secrets and asks Slack's auth.test which workspace and bot the token belongs to.", "저장된 비밀 값을 읽고 Slack의 auth.test로 토큰이 어느 워크스페이스와 봇의 것인지 확인합니다.";
    ConnectIntro => "Copy each value from the NAVER WORKS Developer Console (dev.worksmobile.com). Secrets are encrypted at rest and never shown again.", "각 값을 NAVER WORKS Developer Console(dev.worksmobile.com)에서 복사하세요. 비밀 값은 암호화되어 저장되며 다시 표시되지 않습니다.";
    Connect => "Connect", "연결하기";
    FixErrors => "Some fields need fixing. Secret fields were cleared: enter them again.", "고쳐야 할 항목이 있습니다. 비밀 값 항목은 비워졌으니 다시 입력하세요.";
    BotId => "Bot ID", "Bot ID";
    BotIdHint => "Developer Console → Bot → your bot: the number shown as Bot ID.", "Developer Console → Bot → 해당 봇: Bot ID로 표시된 숫자입니다.";
    ClientId => "Client ID", "Client ID";
    ClientIdHint => "Developer Console → API → your app: Client ID.", "Developer Console → API → 해당 앱: Client ID입니다.";
    ClientSecret => "Client Secret", "Client Secret";
    ClientSecretHint => "Same app page: Client Secret.", "같은 앱 화면의 Client Secret입니다.";
    ServiceAccount => "Service Account", "Service Account";
    ServiceAccountHint => "Same app page, Service Account → Manage: looks like abcde.serviceaccount@your-domain.", "같은 앱 화면의 Service Account → 관리: abcde.serviceaccount@도메인 형태입니다.";
    PrivateKey => "Private Key", "Private Key";
    PrivateKeyHint => "The key file issued with the Service Account (private_….key): paste its text or choose the file.", "Service Account를 발급할 때 받은 키 파일(private_….key)입니다. 내용을 붙여 넣거나 파일을 선택하세요.";
    KeyFile => "Key file", "키 파일";
    BotSecret => "Bot Secret", "Bot Secret";
    BotSecretHint => "Developer Console → Bot → your bot: Bot Secret. botgate checks every callback's signature with it.", "Developer Console → Bot → 해당 봇: Bot Secret입니다. botgate가 모든 콜백의 서명을 이것으로 확인합니다.";
    AuthHeader => "Auth Header value", "인증 헤더 값";
    AuthHeaderHint => "A value you choose, 16 characters or more. Your internal services send it as the DANBEE-NAVERWORKS-AUTH header to get the bot's token.", "직접 정하는 16자 이상의 값입니다. 내부 서비스가 봇 토큰을 받을 때 DANBEE-NAVERWORKS-AUTH 헤더로 보냅니다.";
    Scopes => "Scopes", "Scope";
    ScopesHint => "The OAuth scopes granted to the app, separated by spaces; must include bot (or bot.message).", "앱에 부여된 OAuth Scope를 공백으로 구분해 입력합니다. bot(또는 bot.message)이 있어야 합니다.";
    RateLimit => "Messages per minute", "분당 메시지 수";
    RateLimitHint => "How fast botgate may send for this bot: 60 on the free plan, 240 on paid plans (leave empty for 240).", "이 봇으로 보낼 수 있는 속도입니다. 무료 요금제는 60, 유료 요금제는 240입니다(비워 두면 240).";
    Connected => "Connected. Three steps are left in NAVER WORKS:", "연결되었습니다. NAVER WORKS에서 남은 세 단계:";
    StepCallback => "Developer Console → Bot → your bot → Callback URL: turn it on and paste the Webhook URL below.", "Developer Console → Bot → 해당 봇 → Callback URL: 사용으로 바꾸고 아래 Webhook URL을 붙여 넣으세요.";
    StepEvents => "On the same page, tick the callback events the bot should receive (text, images, files, postbacks…).", "같은 화면에서 봇이 받을 콜백 이벤트(텍스트, 이미지, 파일, 포스트백 등)를 선택하세요.";
    StepAuthorize => "Press Authorise on this page and sign in to NAVER WORKS as a member of the domain: the bot then acts with that member's authorisation.", "이 화면의 권한 부여하기를 누르고 도메인 구성원으로 NAVER WORKS에 로그인하세요. 봇은 그 구성원의 권한으로 동작합니다.";
    ConnectWithSignIn => "Connect with NAVER WORKS sign-in", "NAVER WORKS 로그인으로 연결";
    ConnectWithServiceAccount => "Connect with a service account (JWT)", "서비스 계정(JWT)으로 연결";
    UserModeIntro => "A NAVER WORKS member signs in and allows the bot: no service account or private key is needed. First paste this Redirect URL into the Developer Console, then fill in the app's and the bot's values.", "NAVER WORKS 구성원이 로그인해 봇을 허용하는 방식으로, 서비스 계정이나 개인 키가 필요 없습니다. 먼저 이 Redirect URL을 Developer Console에 붙여 넣은 뒤 앱과 봇의 값을 입력하세요.";
    NwRedirectUrl => "Developer Console → API → your app → Redirect URL", "Developer Console → API → 해당 앱 → Redirect URL";
    AuthorizeUrl => "Sign-in link (a member of the domain opens it)", "로그인 링크(도메인 구성원이 엽니다)";
    Authorization => "Authorisation", "권한 부여";
    NotAuthorized => "Not authorised yet: a NAVER WORKS member must sign in and allow the bot before it can send.", "아직 권한이 없습니다. 봇이 메시지를 보내려면 NAVER WORKS 구성원이 로그인해 봇을 허용해야 합니다.";
    Authorized => "Authorised by a NAVER WORKS member. botgate refreshes the token before it expires.", "NAVER WORKS 구성원이 권한을 부여했습니다. botgate가 토큰이 만료되기 전에 갱신합니다.";
    NeedsReauthorization => "Needs re-authorisation: NAVER WORKS refused the refresh token (it lasts about 90 days). Until a member signs in again, replies wait and the auth URLs answer 409.", "다시 권한 부여 필요: NAVER WORKS가 갱신 토큰을 거부했습니다(유효 기간 약 90일). 구성원이 다시 로그인할 때까지 응답은 대기하고 인증 URL은 409로 응답합니다.";
    Authorize => "Authorise", "권한 부여하기";
    Reauthorize => "Re-authorise", "다시 권한 부여하기";
    AuthMode => "Sign-in", "인증 방식";
    UserAccount => "a NAVER WORKS member (OAuth)", "NAVER WORKS 구성원(OAuth)";
    StepAdd => "Admin → Service → Bot: add the bot to the service, then to the users or rooms it talks with.", "관리자 → 서비스 → 봇: 봇을 서비스에 추가한 뒤 대화할 사용자나 대화방에 추가하세요.";
    Urls => "URLs", "URL";
    WebhookUrl => "Webhook URL (Callback URL)", "Webhook URL(Callback URL)";
    AuthUrl => "Auth URL", "인증 URL";
    AuthRefreshUrl => "Auth Refresh URL", "인증 갱신 URL";
    UrlsHint => "Your services call the auth URLs with the DANBEE-NAVERWORKS-AUTH header: GET for the token, POST …/refresh for a new one.", "내부 서비스는 DANBEE-NAVERWORKS-AUTH 헤더와 함께 인증 URL을 호출합니다. 토큰은 GET, 새 토큰은 POST …/refresh입니다.";
    Copy => "Copy", "복사";
    Copied => "Copied", "복사됨";
    Details => "Credentials", "자격 증명";
    TestConnection => "Test connection", "연결 테스트";
    TestIntro => "Asks NAVER WORKS for a token with these credentials and reads the bot, without touching the token in use.", "이 자격 증명으로 NAVER WORKS에 토큰을 요청하고 봇 정보를 읽습니다. 사용 중인 토큰은 건드리지 않습니다.";
    TestPassed => "Every check passed.", "모든 확인을 통과했습니다.";
    TestFailed => "A check failed:", "확인에 실패한 항목이 있습니다:";
    Token => "Token", "토큰";
    NoToken => "No token yet: one is fetched with the first message or auth URL request.", "아직 토큰이 없습니다. 첫 메시지나 인증 URL 요청 때 발급됩니다.";
    TokenValid => "Valid until", "유효 기한";
    TokenExpired => "Expired at", "만료 시각";
    TokenReads => "Token reads (auth URLs)", "토큰 조회 기록 (인증 URL)";
    NoTokenReads => "No service has read the token through the auth URLs yet.", "아직 인증 URL로 토큰을 조회한 서비스가 없습니다.";
    ReadAt => "Time", "시각";
    ReadAction => "Action", "동작";
    ReadOutcome => "Outcome", "결과";
    ReadAddress => "Address", "주소";
    ActionRead => "read", "조회";
    ActionRefresh => "refresh", "갱신";
    TokenReadsHint => "The last 20 reads and refreshes, with the address they came from; a wrong header is recorded as denied.", "최근 20건의 조회와 갱신, 요청한 주소입니다. 잘못된 헤더는 denied로 기록됩니다.";
    LastRefresh => "Last issued or refreshed", "마지막 발급/갱신";
    RecentEvents => "Recent events", "최근 이벤트";
    NoEvents => "No callback received yet.", "아직 받은 콜백이 없습니다.";
    RecentMessages => "Recent messages", "최근 메시지";
    NoMessages => "No message sent yet.", "아직 보낸 메시지가 없습니다.";
    Received => "Received", "받은 시각";
    Created => "Created", "만든 시각";
    Type => "Type", "유형";
    Conversation => "Conversation", "대화";
    Target => "To", "받는 곳";
    Status => "Status", "상태";
    Attempts => "Attempts", "시도";
    Playground => "Playground", "플레이그라운드";
    OpenPlayground => "Talk to the bot in the playground", "플레이그라운드에서 봇과 대화하기";
    PlaygroundIntro => "You are a user of the emulator's NAVER WORKS: what you send goes to botgate as the signed callback a real message would make, through the engine and back. Press a message's status to see its way through the pipeline.", "에뮬레이터의 NAVER WORKS 사용자가 되어 대화합니다. 보낸 내용은 실제 메시지처럼 서명된 콜백으로 botgate에 전달되어 엔진을 거쳐 돌아옵니다. 메시지의 상태를 누르면 처리 과정을 볼 수 있습니다.";
    PlaygroundYou => "You", "나";
    PlaygroundBot => "Bot", "봇";
    PlaygroundFailed => "The emulator did not deliver that. Try again.", "에뮬레이터가 전달하지 못했습니다. 다시 시도하세요.";
    PlaygroundNeedsScript => "The playground needs JavaScript to show the conversation.", "대화를 보려면 JavaScript가 필요합니다.";
    PipelineStatus => "Status", "상태";
    PipelineStored => "stored", "저장됨";
    PipelineEngine => "engine", "엔진";
    PipelineSent => "sent", "전송";
    OneToOne => "1:1 chat", "1:1 대화";
    InARoom => "In a room", "대화방";
    TypeAMessage => "Type a message", "메시지를 입력하세요";
    Send => "Send", "보내기";
    SendTestMessage => "Send a test message", "테스트 메시지 보내기";
    SendTestIntro => "A text to a user or a room, through the send API as your services would send it; its delivery status shows here as it changes.", "서비스가 보내는 것처럼 send API로 사용자나 대화방에 텍스트를 보냅니다. 전송 상태가 바뀌는 대로 여기에 표시됩니다.";
    UserId => "User ID", "사용자 ID";
    RoomId => "Room ID (channelId)", "대화방 ID(channelId)";
    SlackChannelId => "Channel ID (C…, D…)", "채널 ID(C…, D…)";
    SendTo => "To (the ID)", "받는 곳(ID)";
    MessageText => "Text", "텍스트";
    SlashHint => "Start with / to run a slash command, e.g. /weather Seoul.", "/로 시작하면 슬래시 명령이 됩니다(예: /weather Seoul).";
    Sticker => "Sticker", "스티커";
    Image => "Image", "이미지";
    BackToConnection => "Back to the connection", "연결로 돌아가기";
    LinkUsed => "This sign-in link was already used or has expired. Sign in with the tenant's API key, or run botgate demo again for a new link.", "이 로그인 링크는 이미 사용되었거나 만료되었습니다. 테넌트 API 키로 로그인하거나 botgate demo를 다시 실행해 새 링크를 받으세요.";
    LastError => "Last error", "마지막 오류";
    Replay => "Replay", "다시 처리";
    ReplayAll => "Replay all dead and refused events", "실패·거부된 이벤트 모두 다시 처리";
    Replayed => "Events put back in the queue:", "큐에 다시 넣은 이벤트:";
    Resend => "Send again", "다시 보내기";
    ResendAll => "Send every failed message again", "실패한 메시지 모두 다시 보내기";
    Resent => "Messages put back in the outbox:", "다시 보낼 메시지:";
    CancelAll => "Cancel every queued message", "대기 중인 메시지 모두 취소";
    CancelledCount => "Messages cancelled:", "취소한 메시지:";
    StatusPending => "pending", "대기";
    StatusProcessing => "processing", "처리 중";
    StatusDone => "done", "완료";
    StatusDead => "dead", "실패";
    StatusIgnored => "ignored", "무시됨";
    StatusRefused => "refused (over quota)", "거부됨 (할당량 초과)";
    StatusQueued => "queued", "대기";
    StatusSending => "sending", "보내는 중";
    StatusDelivered => "delivered", "전달됨";
    StatusCancelled => "cancelled", "취소됨";
    StatusFailed => "failed", "실패";
    Rotate => "Rotate credentials", "자격 증명 교체";
    RotateIntro => "Fill in only what changed; empty fields keep their current value. New credentials drop the current token at once.", "바뀐 항목만 입력하세요. 빈 항목은 현재 값을 유지합니다. 새 자격 증명을 저장하면 현재 토큰은 즉시 폐기됩니다.";
    Save => "Save", "저장";
    Saved => "Saved.", "저장했습니다.";
    StatusHook => "Status hook", "상태 알림 URL";
    StatusHookIntro => "botgate posts the final status of each message (delivered, failed, cancelled) to this URL, signed with the secret as engine requests are. Messages written before it was set are not posted.", "botgate가 각 메시지의 최종 상태(전달됨, 실패, 취소됨)를 이 URL로 보냅니다. 엔진 요청과 같은 방식으로 시크릿으로 서명합니다. 설정하기 전에 기록된 메시지는 보내지 않습니다.";
    StatusHookUrl => "Status hook URL", "상태 알림 URL";
    StatusHookSecretHint => "16 characters or more; each post is signed with it (enter it again on every save).", "16자 이상이며 알림마다 이것으로 서명합니다(저장할 때마다 다시 입력).";
    StatusHookRemove => "Stop posting statuses", "상태 알림 중지";
    StatusHookTest => "Send a test post", "테스트 알림 보내기";
    StatusHookAnswered => "The status hook took the test post:", "상태 알림 URL이 테스트 알림을 받았습니다:";
    StatusHookFailed => "The test post failed:", "테스트 알림 실패:";
    StatusHookRemoved => "Statuses are no longer posted.", "더 이상 상태를 보내지 않습니다.";
    Current => "now", "현재";
    Delete => "Delete connection", "연결 삭제";
    DeleteConfirm => "Delete this connection? Its webhook and auth URLs stop working at once, and its stored credentials, token, events and messages are removed. This cannot be undone.", "이 연결을 삭제할까요? Webhook URL과 인증 URL이 즉시 작동하지 않으며 저장된 자격 증명, 토큰, 이벤트와 메시지가 삭제됩니다. 되돌릴 수 없습니다.";
    DeleteYes => "Yes, delete it", "예, 삭제합니다";
    Cancel => "Cancel", "취소";
    Deleted => "The connection was deleted.", "연결을 삭제했습니다.";
    Engine => "Dialogue engine", "대화 엔진";
    Activity => "Activity", "활동 기록";
    EngineTest => "Test the engine", "대화 엔진 시험";
    EngineTestIntro => "Sends the engine a sample user's message, as a real one would reach it (an http engine's request says \"test\": true), and shows its answer. Nothing is stored and no reply is sent.", "실제 메시지와 같은 방식으로 예시 사용자의 메시지를 엔진에 보내고 답을 보여 줍니다(http 엔진 요청에는 \"test\": true가 붙습니다). 아무것도 저장하거나 보내지 않습니다.";
    EngineTestRun => "Send a sample message", "예시 메시지 보내기";
    EngineAnswered => "The engine answered. Replies:", "엔진이 답했습니다. 답장 수:";
    EngineDidNotAnswer => "The engine did not answer:", "엔진이 답하지 않았습니다:";
    ActivityHint => "Who changed what in this tenant, newest first (the last 100): connections, credentials, the engine, the API key, quotas, Slack installations, replays. Field names only, never their values.", "이 테넌트에서 누가 무엇을 바꿨는지 최신순으로 보여 줍니다(최근 100건): 연결, 자격 증명, 대화 엔진, API 키, 쿼터, Slack 설치, 재처리. 값은 기록하지 않고 필드 이름만 남깁니다.";
    NoActivity => "Nothing has changed yet.", "아직 바뀐 것이 없습니다.";
    ActivityWhat => "What", "무엇";
    ActivityWho => "Who", "누가";
    ActivityDetail => "Detail", "내용";
    ActTenantCreated => "Tenant created", "테넌트 생성";
    ActApiKeyReplaced => "API key replaced", "API 키 교체";
    ActEngineSet => "Engine set", "대화 엔진 설정";
    ActStatusHookSet => "Status hook set", "상태 알림 URL 설정";
    ActStatusHookRemoved => "Status hook removed", "상태 알림 URL 삭제";
    ActQuotasSet => "Quotas set", "쿼터 설정";
    ActConnectionCreated => "Connection created", "연결 생성";
    ActConnectionUpdated => "Connection updated", "연결 변경";
    ActConnectionDeleted => "Connection deleted", "연결 삭제";
    ActConnectionAuthorized => "Bot authorised by a member", "구성원이 봇을 승인";
    ActInstallationAdded => "Slack workspace installed", "Slack 워크스페이스 설치";
    ActInstallationRemoved => "Slack installation removed", "Slack 설치 제거";
    ActEventsReplayed => "Events replayed", "이벤트 다시 처리";
    ActMessagesRetried => "Messages sent again", "메시지 다시 보냄";
    ActMessagesCancelled => "Messages cancelled", "메시지 취소";
    WhoAdmin => "admin", "관리자";
    WhoTenant => "tenant", "테넌트";
    WhoOperator => "operator", "운영자";
    WhoWorkspaceAdmin => "workspace admin", "워크스페이스 관리자";
    WhoMember => "member", "구성원";
    ViaApi => "API", "API";
    ViaConsole => "console", "콘솔";
    ViaCli => "command line", "명령줄";
    ViaOauth => "sign-in", "로그인";
    ViaEvents => "events", "이벤트";
    EngineIntro => "Where this tenant's user messages go. Replies come back through the connection.", "이 테넌트의 사용자 메시지가 전달되는 곳입니다. 답장은 연결을 통해 돌아갑니다.";
    EngineKind => "Engine", "엔진";
    EngineEcho => "Echo (built in: repeats each message; for trying things out)", "에코(내장: 받은 메시지를 그대로 돌려줌, 시험용)";
    EngineHttp => "HTTP (botgate's signed JSON protocol)", "HTTP(botgate의 서명된 JSON 프로토콜)";
    EngineRasa => "Rasa (REST channel)", "Rasa(REST 채널)";
    EngineUrl => "Engine URL", "엔진 URL";
    EngineUrlHint => "For HTTP and Rasa: where botgate POSTs each message, e.g. https://bot.example.com/webhooks/rest/webhook for Rasa.", "HTTP와 Rasa용: botgate가 메시지를 POST할 주소입니다. 예: Rasa는 https://bot.example.com/webhooks/rest/webhook";
    EngineSecret => "Signing secret", "서명 비밀 값";
    EngineSecretHint => "For HTTP: 16 characters or more; botgate signs each request with it (enter it again on every save).", "HTTP용: 16자 이상이며 botgate가 요청마다 이것으로 서명합니다(저장할 때마다 다시 입력).";
    FallbackText => "Fallback text", "대체 메시지";
    FallbackTextHint => "Sent to the user when the engine stays down and a message is given up (optional).", "엔진이 계속 응답하지 않아 메시지 처리를 포기할 때 사용자에게 보냅니다(선택).";
    Masked => "stored, ends in", "저장됨, 끝자리";
    Back => "Back", "돌아가기";
    CheckCredentials => "Stored credentials", "저장된 자격 증명";
    CheckToken => "Token from NAVER WORKS", "NAVER WORKS 토큰";
    CheckScopes => "Scopes", "Scope";
    CheckBot => "Bot", "봇";
}

/// Fills `{}` in a text with the arguments, in order.
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut args = args.iter();
    let mut parts = template.split("{}");
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for part in parts {
        out.push_str(args.next().copied().unwrap_or_default());
        out.push_str(part);
    }
    out
}

/// The parsers' messages (English, `{}` for the variable parts) and their
/// Korean. Shared by the API, so the console shows the same rule it enforces.
const FIELD_MESSAGES: &[(&str, &str)] = &[
    ("is required", "필수 항목입니다."),
    ("is not used when auth_mode is \"user\": a NAVER WORKS member authorises the bot instead", "auth_mode가 \"user\"이면 쓰지 않습니다. NAVER WORKS 구성원이 대신 봇을 허용합니다."),
    ("must be \"service_account\" (JWT, the default) or \"user\" (a person signs in)", "\"service_account\"(JWT, 기본값) 또는 \"user\"(사람이 로그인)여야 합니다."),
    ("is required: botgate signs engine requests with it", "필수 항목입니다. botgate가 엔진 요청에 이것으로 서명합니다."),
    ("is required: botgate signs each post with it", "필수 항목입니다. botgate가 알림마다 이것으로 서명합니다."),
    ("must be a string", "문자열이어야 합니다."),
    ("must not be empty", "비어 있으면 안 됩니다."),
    ("must be {} to {} characters long (got {})", "{}~{}자여야 합니다(입력: {}자)."),
    ("may contain only letters, digits, '.', '_' and '-'", "영문자, 숫자, '.', '_', '-'만 쓸 수 있습니다."),
    ("may contain only visible ASCII characters without spaces", "공백 없는 ASCII 문자만 쓸 수 있습니다."),
    ("must be a whole number; send large ids as strings, e.g. \"2000001\"", "정수여야 합니다. 큰 ID는 \"2000001\"처럼 문자열로 보내세요."),
    ("must be a string of digits, e.g. \"2000001\"", "\"2000001\"처럼 숫자로 된 문자열이어야 합니다."),
    ("must be 1 to 20 digits, e.g. \"2000001\"", "\"2000001\"처럼 1~20자리 숫자여야 합니다."),
    ("must look like 1wagx.serviceaccount@example.com (the Service Account shown in the Developer Console)", "1wagx.serviceaccount@example.com 형태여야 합니다(Developer Console에 표시된 Service Account)."),
    ("must be a string such as \"bot bot.read\"", "\"bot bot.read\" 같은 문자열이어야 합니다."),
    ("`{}` is not a NAVER WORKS scope name", "`{}`은(는) NAVER WORKS Scope 이름이 아닙니다."),
    ("lists too many scopes (at most 32)", "Scope가 너무 많습니다(최대 32개)."),
    ("must include `bot` or `bot.message`: botgate sends messages as the bot", "`bot` 또는 `bot.message`가 있어야 합니다. botgate는 봇으로 메시지를 보냅니다."),
    ("must be a whole number from 1 to 6000 (60 on the free plan, 240 on paid plans)", "1~6000 사이의 정수여야 합니다(무료 요금제 60, 유료 요금제 240)."),
    ("must be \"naverworks\" (the only channel so far)", "\"naverworks\"여야 합니다(현재 유일한 채널)."),
    ("cannot be changed; create a new connection", "바꿀 수 없습니다. 새 연결을 만드세요."),
    ("names no field to change", "바꿀 항목이 없습니다."),
    ("must be a string holding the PEM key file", "PEM 키 파일 내용이어야 합니다."),
    ("is too long for an RSA private key", "RSA 개인 키로 보기에는 너무 깁니다."),
    ("the key's base64 body is damaged (was it cut short or edited?)", "키의 base64 본문이 손상되었습니다(잘리거나 수정되었나요?)."),
    ("the PKCS#8 key structure is damaged (was it cut short?)", "PKCS#8 키 구조가 손상되었습니다(잘렸나요?)."),
    ("is not an RSA key; NAVER WORKS issues RSA private keys (RS256)", "RSA 키가 아닙니다. NAVER WORKS는 RSA 개인 키(RS256)를 발급합니다."),
    ("the RSA key inside the PKCS#8 wrapper is damaged", "PKCS#8 안의 RSA 키가 손상되었습니다."),
    ("the PKCS#1 RSA key structure is damaged (was it cut short?)", "PKCS#1 RSA 키 구조가 손상되었습니다(잘렸나요?)."),
    ("is encrypted with a passphrase; paste the unencrypted key file the Developer Console issued (BEGIN PRIVATE KEY)", "암호로 보호된 키입니다. Developer Console이 발급한 암호 없는 키 파일(BEGIN PRIVATE KEY)을 붙여 넣으세요."),
    ("is a public key; paste the private key file (BEGIN PRIVATE KEY)", "공개 키입니다. 개인 키 파일(BEGIN PRIVATE KEY)을 붙여 넣으세요."),
    ("is a PEM \"{}\", not a private key (expected BEGIN PRIVATE KEY)", "PEM \"{}\"이며 개인 키가 아닙니다(BEGIN PRIVATE KEY가 필요합니다)."),
    ("is a {}-bit RSA key; keys of 2048 to 8192 bits are accepted", "{}비트 RSA 키입니다. 2048~8192비트 키만 받습니다."),
    ("is not a consistent RSA key (its numbers do not match)", "일관되지 않은 RSA 키입니다(값이 서로 맞지 않습니다)."),
    ("could not derive the public key", "공개 키를 만들 수 없습니다."),
    ("could not re-encode the key", "키를 다시 인코딩할 수 없습니다."),
    ("is not a PEM private key: expected the file starting with -----BEGIN PRIVATE KEY-----", "PEM 개인 키가 아닙니다. -----BEGIN PRIVATE KEY-----로 시작하는 파일이 필요합니다."),
    ("has a damaged -----BEGIN line", "-----BEGIN 줄이 손상되었습니다."),
    ("is missing its -----END {}----- line (was it cut short?)", "-----END {}----- 줄이 없습니다(잘렸나요?)."),
    ("must be at most 100 characters", "100자 이하여야 합니다."),
    ("must not contain control characters", "제어 문자를 포함할 수 없습니다."),
    ("must be \"echo\", \"http\" or \"rasa\"", "\"echo\", \"http\", \"rasa\" 중 하나여야 합니다."),
    ("is not used by the {} engine", "{} 엔진에서는 쓰지 않습니다."),
    ("must be 16 to 512 characters", "16~512자여야 합니다."),
    ("must be at most 2048 characters", "2048자 이하여야 합니다."),
    ("is not a valid URL ({})", "올바른 URL이 아닙니다({})."),
    ("must be an http:// or https:// URL", "http:// 또는 https:// URL이어야 합니다."),
    ("must name a host", "호스트가 있어야 합니다."),
    ("must not contain a user name or password; use `secret` for the HMAC key", "사용자 이름이나 비밀번호를 넣을 수 없습니다. HMAC 키는 서명 비밀 값에 넣으세요."),
    ("must be a text of 1 to 2000 characters", "1~2000자의 텍스트여야 합니다."),
    ("must be a user or a room", "사용자 또는 대화방이어야 합니다."),
    ("must be a non-empty id of at most 256 characters", "256자 이하의 ID여야 합니다."),
    ("is required: this connection sends through its workspaces' installations (GET …/installations lists them)", "필수 항목입니다. 이 연결은 워크스페이스별 설치로 보냅니다(GET …/installations에 목록이 있습니다)."),
    ("is not a Slack team id", "Slack 팀 ID가 아닙니다."),
    ("the app must be installed in this workspace again (Slack refused its refresh token)", "이 워크스페이스에 앱을 다시 설치해야 합니다(Slack이 리프레시 토큰을 거부했습니다)."),
    ("the app is not installed in this workspace", "이 워크스페이스에는 앱이 설치되어 있지 않습니다."),
    ("must be a list of networks, e.g. [\"10.0.0.0/8\"]", "[\"10.0.0.0/8\"] 같은 네트워크 목록이어야 합니다."),
    ("lists too many networks (at most 32)", "네트워크가 너무 많습니다(최대 32개)."),
    ("must hold networks as strings such as \"10.0.0.0/8\"", "\"10.0.0.0/8\" 같은 문자열로 된 네트워크여야 합니다."),
    ("holds something that is not an IP network (e.g. 10.0.0.0/8)", "IP 네트워크가 아닌 값이 있습니다(예: 10.0.0.0/8)."),
];

/// The variable parts of `message` if it has the shape of `template`.
fn captures<'m>(template: &str, message: &'m str) -> Option<Vec<&'m str>> {
    let parts: Vec<&str> = template.split("{}").collect();
    let (first, rest) = parts.split_first()?;
    let mut remaining = message.strip_prefix(first)?;
    let mut captured = Vec::new();
    for (i, part) in rest.iter().enumerate() {
        let is_last = i + 1 == rest.len();
        let at = if is_last {
            remaining.len().checked_sub(part.len())?
        } else {
            remaining.find(part)?
        };
        let (capture, after) = remaining.split_at(at);
        captured.push(capture);
        remaining = after.strip_prefix(part)?;
    }
    (remaining.is_empty()).then_some(captured)
}

/// A parser's message in `lang`: as it is in English, from the table in
/// Korean. `None` if the table lacks it (a test keeps that from happening).
pub fn field_message(message: &str, lang: Lang) -> Option<String> {
    if lang == Lang::En {
        return Some(message.to_owned());
    }
    FIELD_MESSAGES
        .iter()
        .find_map(|(en, ko)| captures(en, message).map(|args| fill(ko, &args)))
}

/// A parser's message in `lang`, in English where the table lacks it.
pub fn say(message: &str, lang: Lang) -> String {
    field_message(message, lang).unwrap_or_else(|| message.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::naverworks::{
        parse_rate_limit, parse_scope, parse_service_account, parse_text, BotId, Charset,
        PrivateKeyPem,
    };
    use crate::domain::tenant::{EngineConfig, EngineUrl, StatusHook, TenantName};

    #[test]
    fn accept_language_picks_korean_or_english() {
        assert_eq!(
            Lang::from_accept_language("ko-KR,ko;q=0.9,en-US;q=0.8"),
            Lang::Ko
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ko;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("ja,ko;q=0.5"), Lang::Ko);
        assert_eq!(Lang::from_accept_language("fr, de"), Lang::En);
        assert_eq!(Lang::from_accept_language("en;q=0.2, ko;q=0.7"), Lang::Ko);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }

    #[test]
    fn every_text_has_both_languages() {
        for t in T::ALL {
            assert!(
                !t.get(Lang::En).is_empty() && !t.get(Lang::Ko).is_empty(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn templates_capture_their_variable_parts() {
        assert_eq!(
            field_message("must be 1 to 128 characters long (got 300)", Lang::Ko).as_deref(),
            Some("1~128자여야 합니다(입력: 300자).")
        );
        assert_eq!(
            field_message(
                "is missing its -----END PRIVATE KEY----- line (was it cut short?)",
                Lang::Ko
            )
            .as_deref(),
            Some("-----END PRIVATE KEY----- 줄이 없습니다(잘렸나요?).")
        );
        assert_eq!(field_message("something new", Lang::Ko), None);
        assert_eq!(
            field_message("something new", Lang::En).as_deref(),
            Some("something new")
        );
    }

    /// Runs every parser the console's forms use on bad input and checks each
    /// message it gives has a Korean translation.
    #[test]
    fn every_validation_message_is_translated() {
        let mut messages: Vec<String> = Vec::new();
        let values = [
            json!(1.5),
            json!(true),
            json!(""),
            json!("  "),
            json!("x".repeat(300)),
            json!("a b"),
            json!("ü"),
            json!(-1),
            json!(0),
            json!(7000),
            json!("abc"),
        ];
        for v in &values {
            messages.extend(BotId::parse("bot_id", v).err().map(|e| e.message));
            for charset in [Charset::Id, Charset::Visible] {
                messages.extend(parse_text("x", v, 2, 128, charset).err().map(|e| e.message));
            }
            messages.extend(parse_service_account(v).err().map(|e| e.message));
            messages.extend(parse_scope(v).err().map(|e| e.message));
            messages.extend(parse_rate_limit(v).err().map(|e| e.message));
        }
        let many: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        for scope in ["Bot", "bot.read", &format!("bot {}", many.join(" "))] {
            messages.extend(parse_scope(&json!(scope)).err().map(|e| e.message));
        }
        let keys = [
            "hello",
            "-----BEGIN PRIVATE KEY",
            "-----BEGIN PRIVATE KEY-----\nMIIB\n",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMIIBVQ==\n-----END PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBVQ==\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMIIBVQ==\n-----END PUBLIC KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBVQ==\n-----END ENCRYPTED PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMIIBVQ==\n-----END EC PRIVATE KEY-----",
            "-----BEGIN CERTIFICATE-----\nMIIBVQ==\n-----END CERTIFICATE-----",
            include_str!("../../tests/fixtures/keys/ec_pkcs8.pem"),
            include_str!("../../tests/fixtures/keys/weak1024_pkcs8.pem"),
            include_str!("../../tests/fixtures/keys/app1_encrypted.pem"),
            include_str!("../../tests/fixtures/keys/app1_public.pem"),
        ];
        for key in keys {
            messages.extend(PrivateKeyPem::parse(key).err());
        }
        for name in ["", &"n".repeat(101), "a\u{7}b"] {
            messages.extend(TenantName::parse(name).err().map(|e| e.message));
        }
        for url in [
            "nope",
            "ftp://x",
            "http://u:p@x",
            &format!("http://{}", "h".repeat(2100)),
        ] {
            messages.extend(EngineUrl::parse(url).err());
        }
        let s = |t: &str| Value::String(t.to_owned());
        for (kind, url, secret) in [
            (None, None, None),
            (Some(s("x")), None, None),
            (Some(s("echo")), Some(s("http://x")), Some(s("y"))),
            (Some(s("http")), None, None),
            (Some(s("http")), Some(json!(1)), Some(json!(1))),
            (Some(s("http")), Some(s("http://x")), Some(s("short"))),
            (
                Some(s("rasa")),
                Some(s("http://x")),
                Some(s("0123456789abcdef")),
            ),
        ] {
            if let Err(errors) = EngineConfig::parse(kind.as_ref(), url.as_ref(), secret.as_ref()) {
                messages.extend(errors.into_iter().map(|e| e.message));
            }
        }
        for (url, secret) in [(None, None), (Some(json!(1)), Some(json!(1)))] {
            if let Err(errors) = StatusHook::parse(url.as_ref(), secret.as_ref()) {
                messages.extend(errors.into_iter().map(|e| e.message));
            }
        }
        // The test message's form and the send API's workspace rules.
        messages.extend(crate::console::test_message::TARGET_REFUSALS.map(String::from));
        messages.extend(crate::channels::slack::TEAM_REFUSALS.map(String::from));
        let many = Value::Array(vec![json!("10.0.0.1"); 33]);
        for networks in [json!("x"), many, json!([1]), json!(["nope"])] {
            let refused = crate::service::connections::auth_networks(&networks).err();
            messages.extend(refused.map(|e| e.message));
        }
        assert!(
            messages.len() > 40,
            "too few messages gathered: {messages:?}"
        );
        for m in &messages {
            assert!(field_message(m, Lang::Ko).is_some(), "no Korean for {m:?}");
        }
    }
}
