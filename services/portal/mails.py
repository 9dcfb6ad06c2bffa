"""E-mails the portal sends: invitations and password resets, in the recipient's language."""
from __future__ import annotations

from helpdesk.portal.i18n import translate


def send_invite(portal, account: dict, secret: str, invited_by: str) -> None:
    lang = account["language"]
    link = f"{portal.config.portal_base_url}/invite/{secret}"
    text = translate("Hello {name},\n\n{by} invites you to the helpdesk. Set your password here:\n{link}\n\n"
                     "The link works once and expires in {hours} hours.", lang,
                     name=account["name"], by=invited_by, link=link, hours=portal.config.portal_invite_hours)
    portal.mail.send(account["email"], translate("Invitation to the helpdesk", lang), text)


def send_reset(portal, account, secret: str) -> None:
    lang = account.language
    link = f"{portal.config.portal_base_url}/password/reset/{secret}"
    text = translate("Hello {name},\n\nsomeone asked to reset your helpdesk password. If it was you, set a new "
                     "one here:\n{link}\n\nThe link works once and expires in 2 hours. If it was not you, "
                     "ignore this e-mail.", lang, name=account.name, link=link)
    portal.mail.send(account.email, translate("Password reset", lang), text)
