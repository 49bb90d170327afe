package ae
