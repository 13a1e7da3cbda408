"""`erasure keys`: make, rotate and inspect the key hierarchy of crypto-shredding."""

from __future__ import annotations

import json
import secrets

import click


@click.group()
def keys() -> None:
    """Key-encryption keys (in a key file or ERASURE_KEYS_KEK) and the data keys they wrap (key database)."""


@keys.command("generate")
@click.option("--kek-id", default="k1", show_default=True, help="Id of the first key-encryption key.")
@click.option("--if-missing", is_flag=True, help="Do nothing (exit 0) when the key file already exists.")
def generate(kek_id: str, if_missing: bool) -> None:
    """Write a new key file (ERASURE_KEYS_FILE, default var/keys.json) with a key-encryption key and a blind-index
    key. Refuses to replace an existing file: its keys open every data key.

    \b
    Examples:
      erasure keys generate
      ERASURE_KEYS_FILE=/etc/erasure/keys.json erasure keys generate --kek-id 2026-12
    """
    from shared.keys import KeySettings, new_material, write_key_file

    path = KeySettings().file
    if path.exists():
        if if_missing:
            return
        raise click.ClickException(f"{path} exists; its keys open every data key, so it is never replaced "
                                   "(`erasure keys rotate` adds a new key-encryption key)")
    write_key_file(path, new_material(kek_id))
    click.echo(f"wrote {path} (key-encryption key {kek_id!r}, readable by its owner only); keep a copy where "
               "backups of the key database are not")


@keys.command("rotate")
@click.option("--new-id", help="Id of the new key-encryption key (default: a random one).")
@click.option("--retire", "retire_id", help="Instead: drop this old key-encryption key once no data key uses it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rotate(new_id: str | None, retire_id: str | None, as_json: bool) -> None:
    """Add a key-encryption key to the key file, make it the one new data keys are wrapped with, and re-wrap
    every data key with it while the services run (they accept both until the old one is retired).

    \b
    Steps: `erasure keys rotate`, restart the services (they then wrap with the new key), `erasure keys rotate`
    again to re-wrap keys made meanwhile, then `erasure keys rotate --retire OLD`.
    Examples:
      erasure keys rotate --new-id 2027-06
      erasure keys rotate --retire k1
    """
    from dataclasses import replace

    from shared.keys import KeyConfigError, KeySettings, key_store, load_material, write_key_file
    from shared.keys.config import KEY_BYTES

    settings = KeySettings()
    if settings.kek is not None and settings.kek.get_secret_value().strip():
        raise click.ClickException("the keys come from ERASURE_KEYS_KEK: rotate them where that variable is set "
                                   "(add `new:<base64>`, point ERASURE_KEYS_KEK_ID at it, then run `erasure keys "
                                   "rotate` to re-wrap)")
    material = load_material(settings)
    if retire_id is not None:
        if retire_id == material.kek_id:
            raise click.ClickException(f"{retire_id!r} is the key new data keys are wrapped with; rotate first")
        in_use = key_store().status()["live_by_kek"].get(retire_id, 0)
        if in_use:
            raise click.ClickException(f"{in_use} data keys are still wrapped by {retire_id!r}; run `erasure keys "
                                       "rotate` to re-wrap them first")
        write_key_file(settings.file, replace(material, keks={k: v for k, v in material.keks.items()
                                                                if k != retire_id}))
        outcome = {"retired": retire_id}
    else:
        if new_id is None and material.keks.get(material.kek_id) and key_store().status()["live_by_kek"].keys() \
                - {material.kek_id}:
            new_id = material.kek_id  # keys still under an older KEK: finish that rotation, add none
        elif new_id is None:
            new_id = f"k{secrets.token_hex(4)}"
        if new_id in material.keks and new_id != material.kek_id:
            raise KeyConfigError(f"key-encryption key {new_id!r} already exists")
        keks = dict(material.keks)
        keks.setdefault(new_id, secrets.token_bytes(KEY_BYTES))
        updated = replace(material, keks=keks, kek_id=new_id)
        write_key_file(settings.file, updated)
        store = key_store()
        store.material = replace(updated, origin=material.origin)
        outcome = {"kek_id": new_id, "rewrapped": store.rewrap()}
    if as_json:
        click.echo(json.dumps(outcome))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in outcome.items()))


@keys.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Live and destroyed data keys, live keys per key-encryption key, and where the keys come from.

    \b
    Example:
      erasure keys status --json
    """
    from shared.keys import key_store

    store = key_store()
    store.check()
    report = store.status()
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"data keys: {report['live']} live, {report['destroyed']} destroyed")
    for kek_id, count in sorted(report["live_by_kek"].items()):
        click.echo(f"  wrapped by {kek_id}: {count}")
    click.echo(f"key-encryption keys configured: {', '.join(report['keks_configured'])} "
               f"(wrapping with {report['kek_id']}; from {report['keys_from']})")


@keys.command("issue")
@click.option("--user", "user_id", required=True, help="The user whose events the publisher will seal.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def issue(user_id: str, as_json: bool) -> None:
    """Give a publisher the user's data key, to seal the contact details of the user's events with
    (docs/CONTRACT.md, "Sealed personal data"). Made on first use; gone when the user is erased.

    \b
    Example:
      erasure keys issue --user u-1001 --json
    """
    import base64

    from shared.keys import key_store, user_subject

    key_id, key = key_store().issue(user_subject(user_id))
    encoded = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    if as_json:
        click.echo(json.dumps({"kid": key_id, "key": encoded}))
    else:
        click.echo(f"kid {key_id}\nkey {encoded}")
