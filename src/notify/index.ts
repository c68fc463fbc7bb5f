/** Outbound notifications (docs/notifications.md). */
export { notificationPayload, WebhookNotifier, type NotificationDetails, type NotificationPayload, type NotifierDeps } from "./webhook-notifier.ts";
