/* The ipcring plugin: ipcringsink and ipcringsrc. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstipcringelements.h"

#include <gst/video/video.h>

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ok = FALSE;
  /* Caps name value types by their GType names; a type must exist before a
   * caps string that uses it can be read. Decoders put the video library's
   * flag set into raw video caps (multiview-flags): register it, so that a
   * consumer that has not loaded that library yet reads those caps too. */
  g_type_ensure (GST_TYPE_VIDEO_MULTIVIEW_FLAGSET);
  ok |= GST_ELEMENT_REGISTER (ipcringsink, plugin);
  ok |= GST_ELEMENT_REGISTER (ipcringsrc, plugin);
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, ipcring,
    "Split a pipeline across processes through a shared-memory ring",
    plugin_init, PACKAGE_VERSION, "LGPL", PACKAGE_NAME, PACKAGE_ORIGIN)
