"""Built-in tools exist from the start, and a "Prompt editors" group that can edit configs but not delete calls."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

BUILTINS = {
    "end_call": "End the phone call. Use it after saying goodbye, when the caller is done.",
    "transfer_call": "Transfer the caller to a human colleague. Tell the caller first that you are transferring.",
}
SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "description": "Why."}},
    "required": [],
}
EDITOR_PERMS = [
    "view_agentconfig", "change_agentconfig", "add_agentconfig", "view_agentconfigrevision",
    "view_tool", "view_phonenumber", "view_call", "view_callevent",
]


def forwards(apps, schema_editor):
    Tool = apps.get_model("calls", "Tool")
    for name, description in BUILTINS.items():
        Tool.objects.get_or_create(name=name, defaults={"kind": "builtin", "description": description,
                                                        "parameters": SCHEMA})
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Prompt editors")
    group.permissions.set(Permission.objects.filter(content_type__app_label="calls", codename__in=EDITOR_PERMS))


class Migration(migrations.Migration):
    dependencies = [("calls", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
