//! The CLI's words for the library's remedies: which flag or command gets a
//! user out of an error. Every error message the CLI prints goes through
//! [`message`], so the library's errors stay free of flag names.
//!
//! A command named here is one that works as written once its capitalised
//! placeholders are filled in (BACKING: the backing the error is about;
//! SIZE|auto; BYTES): `tests/remedies.rs` puts a backing into every error
//! state it can reach offline and runs each remedy a message names.

use pmem_stack::remedy::{HasRemedy, Remedy};

/// How to apply `remedy` with this CLI.
pub fn remedy_text(remedy: Remedy) -> &'static str {
    match remedy {
        Remedy::Overwrite => "pass --force to overwrite it",
        Remedy::Reformat => {
            "pass --force to write a new volume over it (its uuid and layout are lost)"
        }
        Remedy::RepairOrOverwrite => {
            "run 'pmem-stack check --repair BACKING', or pass --force to format anew"
        }
        Remedy::Format => "'pmem-stack format BACKING --reserve SIZE|auto' creates one",
        Remedy::StartOver => {
            "'pmem-stack format --force BACKING' writes new super blocks and nothing else: given the reserve, mode, align and block size the volume had (above, when a damaged copy still records them), its data area comes back where it was"
        }
        Remedy::RestoreOrOverwrite => {
            "to reach that volume, give the namespace its earlier size and mode again (ndctl); or write a new volume with 'pmem-stack format --force BACKING --reserve SIZE|auto', giving up what is left of it"
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
        Remedy::RepairFirst => "run 'pmem-stack check --repair BACKING' first",
        Remedy::RestoreSize => {
            "give the backing the size the volume needs again ('truncate -s BYTES' for an image file, 'ndctl create-namespace -e NAMESPACE -f -s BYTES' for a namespace); nothing was changed"
        }
        Remedy::Relayout => {
            "only a new layout gets there: 'pmem-stack format --force BACKING --reserve SIZE|auto' with the options you want (a new data area: what it held is lost)"
        }
    }
}

/// The remedy of `cause` itself, if it is one of the library's errors that
/// know one. The CLI is the layer above all of them, so the downcasts live
/// here and the library's `remedy` module depends on nothing.
fn of(cause: &(dyn std::error::Error + 'static)) -> Option<Remedy> {
    fn as_<E: HasRemedy + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Remedy> {
        cause.downcast_ref::<E>()?.remedy()
    }
    as_::<pmem_stack::volume::VolumeError>(cause)
        .or_else(|| as_::<pmem_stack::metadata::MetadataError>(cause))
        .or_else(|| as_::<pmem_stack::metadata::Refusal>(cause))
        .or_else(|| as_::<pmem_stack::volume::amend::UpdateError>(cause))
        .or_else(|| as_::<pmem_stack::server::ServerError>(cause))
        .or_else(|| as_::<pmem_stack::recovery::RecoverError>(cause))
        .or_else(|| as_::<pmem_stack::ublk::control::ServeError>(cause))
        .or_else(|| as_::<pmem_stack::dm::MapError>(cause))
}

/// The first remedy any error in the chain knows.
fn find(err: &anyhow::Error) -> Option<Remedy> {
    err.chain().find_map(of)
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
            "cannot add /dev/pmem0: no pmem-stack super block found (not formatted); 'pmem-stack format BACKING --reserve SIZE|auto' creates one"
        );
        let plain = anyhow::anyhow!("no remedy here");
        assert_eq!(message(&plain), "no remedy here");
    }
}
