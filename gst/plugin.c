/* The ipcring plugin: ipcringsink and ipcringsrc. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstipcringelements.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ok = FALSE;
  ok |= GST_ELEMENT_REGISTER (ipcringsink, plugin);
  ok |= GST_ELEMENT_REGISTER (ipcringsrc, plugin);
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, ipcring,
    "Split a pipeline across processes through a shared-memory ring",
    plugin_init, PACKAGE_VERSION, "LGPL", PACKAGE_NAME, PACKAGE_ORIGIN)
