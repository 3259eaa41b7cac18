"""`gear notify`: where and when your executions tell you they ended."""

from __future__ import annotations

import click

from .group import json_option, load_context


@click.command()
@click.option("--email", metavar="ADDR", help="Send email here instead of the site's address for you "
              "(`default` goes back to the site's).")
@click.option("--sms", metavar="NUMBER", help="Also send a short text when an execution ends or fails "
              "(international form: +15551234567).")
@click.option("--no-sms", is_flag=True, help="Stop sending texts.")
@click.option("--on", "events", metavar="EVENTS", help="Comma-separated: begin,end,fail. End and fail "
              "are always on: email cannot be turned off.")
@json_option
def notify(email: str | None, sms: str | None, no_sms: bool, events: str | None, as_json: bool) -> None:
    """Show or change how your executions notify you.

    Every execution emails you when it ends or fails (and when it begins,
    with --on begin,end,fail), through Slurm's own mail. A text message is
    sent too once you give a number with --sms. Settings apply to executions
    submitted from now on. Without options, shows the current settings.

    \b
    Examples:
      gear notify
      gear notify --email alice@lab.example.org --on begin,end,fail
      gear notify --sms +15551234567
      gear notify --no-sms --email default
    """
    from ..base.errors import GearError, UsageError
    from ..base.names import check_email, check_phone
    from ..notify import settings as notifications
    from .output import print_json, warn

    site, storage = load_context()
    mail = site.mail
    if sms is not None and no_sms:
        raise UsageError("--sms and --no-sms cannot be used together")
    changing = email is not None or sms is not None or no_sms or events is not None
    try:
        settings = notifications.load_settings(storage)
    except GearError:
        if not changing:
            raise
        settings = notifications.Settings()  # a broken file is replaced by the new settings
    if email is not None:
        settings.email = None if email == "default" else check_email(email)
    if sms is not None:
        number = check_phone(sms)
        if not notifications.sms_possible(mail):
            raise GearError("this site sends no text messages (no SMS gateway in its configuration); "
                            "ask your admin")
        settings.sms = number
    if no_sms:
        settings.sms = None
    if events is not None:
        settings.events = notifications.parse_events(events)
        missing = [e for e in notifications.ALWAYS_ON if e not in {p.strip().lower() for p in events.split(",")}]
        if missing:
            warn(f"{' and '.join(missing)} added: email on end and fail cannot be turned off")
    if changing:
        notifications.save_settings(storage, settings)

    try:
        site_address = notifications.site_address(mail, storage.user) if mail.enabled else None
    except UsageError:
        site_address = None
    address = settings.email or site_address
    if as_json:
        print_json({"email": address, "email_is_default": settings.email is None, "sms": settings.sms,
                    "on": list(settings.events), "mail_enabled": mail.enabled,
                    "sms_available": notifications.sms_possible(mail)})
        return
    if not mail.enabled:
        warn("this site has switched mail off: no notifications are sent (your settings are kept)")
    source = "the site's address for you" if settings.email is None else "your choice"
    click.echo(f"email  {address or '(none: the site gives no address)'}  ({source})")
    click.echo(f"on     {', '.join(settings.events)}")
    if settings.sms:
        click.echo(f"sms    {settings.sms}  (when an execution ends or fails)")
    else:
        click.echo("sms    off" + ("" if notifications.sms_possible(mail) else "  (this site sends no texts)"))
