package reporter

// otherKinds makes the reporters that are not a forge's or mail: JSON to a
// URL and chat webhooks.
var otherKinds = map[string]newFunc{
	"http_status_push": newHTTPStatusPush,
	"chat_webhook":     newChatWebhook,
}
