//! What a user can do about an error, named in the library's terms.
//!
//! The library knows *what* is wrong and which way out exists — overwrite,
//! repair, format first, serve as recorded — but not how a front end spells
//! that: the CLI names flags and commands, a daemon API would name fields.
//! So library errors carry a [`Remedy`] and keep their messages to the
//! problem; `pmem-stack`'s CLI renders the remedy as the flag or command to
//! use (`cli::remedy_text`).

/// A way out of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Overwrite foreign data on the backing (destroys it).
    Overwrite,
    /// Destroy the volume on the backing and format anew.
    Reformat,
    /// Repair the metadata from its good copy, or overwrite.
    RepairOrOverwrite,
    /// Format the backing first.
    Format,
    /// Nothing is left to repair from: only formatting anew (destroying the
    /// data) starts over.
    StartOver,
    /// The metadata found belongs to the device as it was configured before:
    /// configure it that way again to reach the volume, or overwrite.
    RestoreOrOverwrite,
    /// A format needs a reserve size.
    GiveReserve,
    /// Serving a blank backing needs a reserve size to format it with.
    GiveReserveToServe,
    /// Serve the recorded layout, or re-layout (destroys the data).
    ServeAsRecorded,
    /// Ask for another device id, or let the kernel pick one.
    OtherDeviceId,
    /// The backing cannot be mapped by the kernel: serve it through ublk.
    ServeWithUblk,
    /// A map name is taken: choose another one.
    OtherMapName,
    /// Repair the metadata before changing the volume.
    RepairFirst,
    /// Only a new layout (destroying the data) gets there.
    Relayout,
    /// The backing shrank below the volume: give it back the size the
    /// volume needs.
    RestoreSize,
}

impl Remedy {
    /// Every remedy, for naming them across the server's handshake.
    const ALL: [Remedy; 15] = [
        Remedy::Overwrite,
        Remedy::Reformat,
        Remedy::RepairOrOverwrite,
        Remedy::Format,
        Remedy::StartOver,
        Remedy::RestoreOrOverwrite,
        Remedy::GiveReserve,
        Remedy::GiveReserveToServe,
        Remedy::ServeAsRecorded,
        Remedy::OtherDeviceId,
        Remedy::ServeWithUblk,
        Remedy::OtherMapName,
        Remedy::RepairFirst,
        Remedy::Relayout,
        Remedy::RestoreSize,
    ];

    /// A stable name (the `Debug` form), for the handshake pipe.
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The remedy called `name`.
    pub fn from_name(name: &str) -> Option<Remedy> {
        Remedy::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// An error that may know a way out.
pub trait HasRemedy {
    /// The way out, if there is one.
    fn remedy(&self) -> Option<Remedy>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for remedy in Remedy::ALL {
            assert_eq!(Remedy::from_name(&remedy.name()), Some(remedy));
        }
        assert_eq!(Remedy::from_name("Nonsense"), None);
    }
}
