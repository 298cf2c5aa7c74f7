//! The CLI's words for the library's remedies: which flag or command gets a
//! user out of an error. Every error message the CLI prints goes through
//! [`message`], so the library's errors stay free of flag names.

use pmem_stack::remedy::Remedy;

/// How to apply `remedy` with this CLI.
pub fn remedy_text(remedy: Remedy) -> &'static str {
    match remedy {
        Remedy::Overwrite => "pass --force to overwrite it",
        Remedy::Reformat => "pass --force to destroy it and format anew",
        Remedy::RepairOrOverwrite => {
            "run 'pmem-stack check --repair' or pass --force to format anew"
        }
        Remedy::Format => "'pmem-stack format' creates one",
        Remedy::StartOver => "only 'format --force' can start over, destroying the data",
        Remedy::RestoreOrOverwrite => {
            "to reach that volume, give the namespace its earlier size and mode again (ndctl); or format this device anew with 'pmem-stack format --force', giving up what is left of it"
        }
        Remedy::GiveReserve => "pass --reserve SIZE|auto (or --reserve 0 for none)",
        Remedy::GiveReserveToServe => {
            "pass --reserve SIZE|auto (and optionally --mode, --align) to format it on first use"
        }
        Remedy::ServeAsRecorded => {
            "leave the layout options out to serve it as recorded, or re-layout with 'pmem-stack format --force' (destroys the data)"
        }
        Remedy::OtherDeviceId => "pick another --id or leave it out",
        Remedy::ServeWithUblk => "serve it with 'pmem-stack add' instead",
        Remedy::OtherMapName => "pick another --name, or 'pmem-stack unmap' that one first",
        Remedy::RepairFirst => "run 'pmem-stack check --repair' first",
        Remedy::Relayout => {
            "only a new layout gets there: 'pmem-stack format --force' with the options you want (destroys the data)"
        }
    }
}

/// The first remedy any error in the chain knows.
fn find(err: &anyhow::Error) -> Option<Remedy> {
    pmem_stack::remedy::find(err.as_ref())
}

/// The one-line message for `err`: its chain, then what to do about it.
pub fn message(err: &anyhow::Error) -> String {
    match find(err) {
        Some(remedy) => format!("{err:#}; {}", remedy_text(remedy)),
        None => format!("{err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use pmem_stack::metadata::MetadataError;
    use pmem_stack::volume::VolumeError;

    #[test]
    fn the_remedy_follows_the_whole_chain() {
        let err = Err::<(), _>(VolumeError::from(MetadataError::NotFormatted))
            .context("cannot add /dev/pmem0")
            .expect_err("error");
        assert_eq!(
            message(&err),
            "cannot add /dev/pmem0: no pmem-stack super block found (not formatted); 'pmem-stack format' creates one"
        );
        let plain = anyhow::anyhow!("no remedy here");
        assert_eq!(message(&plain), "no remedy here");
    }
}
