from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "simtopup.notifications"
    label = "notifications"
    verbose_name = "Notifications"
